"""The Nacos 2.x gRPC protocol (groundwork: nothing in the node uses this package yet).

nacos_grpc_service.proto is the wire schema (no protobuf package: the methods are
/Request/request, unary, and /BiRequestStream/requestBiStream, bidirectional); the
nacos_grpc_service_pb2*.py modules are generated from it by scripts/gen-grpc and committed. They
need grpcio and protobuf at run time (the `grpc` extra), and are left out of ruff and mypy. What
travels inside a Payload, and how the clients behave, is in docs/grpc-notes.md.
"""
