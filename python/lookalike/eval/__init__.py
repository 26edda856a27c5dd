"""Relevance evaluation: ranking metrics, offline runs over labelled queries and
online metrics from shoppers' feedback."""
