"""Payloads at the edge: a received Payload's bytes to (type, JSON object, headers, clientIp),
and a response or server request back to Payload bytes, as the Java server writes them (no
nulls: Jackson NON_NULL; `resultCode` 200 and `errorCode` 0 on success; failures as an
`ErrorResponse` with `resultCode` 500, the error code and a message).

The body is JSON in `Any.value`; `Any.type_url` is ignored. A JSON `null` counts as absent
everywhere (the Rust client sends nulls), so nulls are dropped from the body's top level here
and the field readers (nacos_actors.grpc.fields) treat nested ones the same way. Pure functions
of their arguments: any thread (the loop's, in the server).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf.message import DecodeError

from nacos_actors.core.values import clip, printable
from nacos_actors.grpc import nacos_grpc_service_pb2 as schema

ERROR_RESPONSE = "ErrorResponse"
SUCCESS = 200
FAIL = 500
# Nacos's error codes (NacosException; GrpcRequestAcceptor).
INVALID_SERVER_STATUS = 300
UN_REGISTER = 301
NO_HANDLER = 302
INVALID_PARAM = 400
SERVER_ERROR = 500
OVER_THRESHOLD = 503
NO_HANDLER_MESSAGE = "RequestHandler Not Found"
# The generated module is dynamic (its classes are built at import); typed as Any here.
PAYLOAD: Any = schema.__dict__["Payload"]


class PayloadError(Exception):
    """A Payload that cannot be read: answered as an ErrorResponse with `code` and `message`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Received:
    """One received Payload: its `metadata.type`, its body (a JSON object, nulls dropped), its
    `metadata.headers` and `metadata.clientIp`."""

    type: str
    body: dict[str, Any]
    headers: Mapping[str, str]
    client_ip: str


def decode(data: bytes) -> Received:
    """The Payload in `data`; PayloadError (400) when it is not a Payload or its body is not a
    JSON object. An unknown type is the caller's to judge (302)."""
    payload = PAYLOAD()
    try:
        payload.ParseFromString(data)
    except DecodeError:
        raise PayloadError(INVALID_PARAM, "The payload is not a Nacos Payload message.") from None
    metadata = payload.metadata
    kind = metadata.type
    raw = payload.body.value
    if not raw:
        body: Any = {}
    else:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise PayloadError(INVALID_PARAM, f"The body of {safe(kind)} is not valid JSON.") from None
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise PayloadError(INVALID_PARAM, f"The body of {safe(kind)} must be a JSON object.")
    return Received(
        kind,
        {name: value for name, value in body.items() if value is not None},
        dict(metadata.headers),
        metadata.clientIp,
    )


def encode(kind: str, body: Mapping[str, Any]) -> bytes:
    """A Payload of type `kind` carrying `body` as JSON (the caller never puts a None in it)."""
    payload = PAYLOAD()
    payload.metadata.type = kind
    payload.body.value = orjson.dumps(body)
    return bytes(payload.SerializeToString())


def encode_raw(kind: str, body: bytes) -> bytes:
    """A Payload of type `kind` carrying `body`, JSON already rendered (a server push)."""
    payload = PAYLOAD()
    payload.metadata.type = kind
    payload.body.value = body
    return bytes(payload.SerializeToString())


def success(kind: str, fields: Mapping[str, Any] | None = None) -> bytes:
    """A successful response of type `kind` (resultCode 200, errorCode 0) with `fields`."""
    return encode(kind, {"resultCode": SUCCESS, "errorCode": 0, **(fields or {})})


def error_response(code: int, message: str) -> bytes:
    """An ErrorResponse: resultCode 500, errorCode `code`, `message`."""
    return encode(ERROR_RESPONSE, {"resultCode": FAIL, "errorCode": code, "message": message})


def safe(text: str) -> str:
    """A client's text, clipped and with control characters escaped, for a message or log."""
    return printable(clip(text or "(no type)"))
