"""The gRPC search service (lookalike.v1): config, servicer, server bootstrap."""
