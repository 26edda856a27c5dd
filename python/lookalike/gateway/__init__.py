"""The HTTP/JSON gateway to the gRPC API and the browser console it serves
(`lookalike serve --http HOST:PORT`). It sits above the service: it imports
lookalike.service, and only the server bootstrap imports it, to start it."""

from lookalike.gateway.gateway import Gateway

__all__ = ["Gateway"]
