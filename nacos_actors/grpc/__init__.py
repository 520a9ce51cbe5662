"""The Nacos 2.x gRPC protocol: the server Nacos 2.x and 3.x clients connect to.

`server` (the grpc.aio server on the node's loop and the adapter of the connection table,
nacos_actors.core.connections), `codec` (Payload bytes to a type and a JSON object, and back),
`fields` (request fields under the v1 value rules) and `naming` (the naming requests, and the
liveness of a connection's instances). nacos_grpc_service.proto is the wire schema (no protobuf
package: the methods are /Request/request, unary, and /BiRequestStream/requestBiStream,
bidirectional); the nacos_grpc_service_pb2*.py modules are generated from it by scripts/gen-grpc
and committed, and left out of ruff and mypy. What travels inside a Payload, and how the clients
behave, is in docs/grpc-notes.md.
"""
