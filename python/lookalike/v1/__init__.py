"""Generated stubs of the gRPC API, package lookalike.v1 (proto/lookalike/v1/).
Do not edit the *_pb2* files: change the .proto files and run proto/generate.py."""
