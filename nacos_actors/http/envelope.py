"""The `{code, message, data}` answer of the Nacos 2.x and 3.x HTTP APIs (Nacos's `Result`),
and how a refusal maps to its codes.

Success is HTTP 200 `{"code": 0, "message": "success", "data": ...}`. A refusal keeps the HTTP
status the v1 API would answer and carries Nacos's `ErrorCode` (com.alibaba.nacos.api.model.v2):
`code` and its fixed `message`, with the detail (which names the parameter) in `data`, as Nacos's
NacosApiExceptionHandler answers a NacosApiException. Pure functions (event loop thread).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from nacos_actors.core.values import is_valid_utf8
from nacos_actors.http.params.base import MissingParam, ParamError
from nacos_actors.render.views import dumps

SUCCESS = (0, "success")
PARAMETER_MISSING = (10000, "parameter missing")
ACCESS_DENIED = (10001, "access denied")
PARAMETER_VALIDATE_ERROR = (20002, "parameter validate error")
RESOURCE_NOT_FOUND = (20004, "resource not found")
WEIGHT_ERROR = (21001, "weight error")
INSTANCE_NOT_FOUND = (21003, "instance not found")
INSTANCE_ERROR = (21004, "instance error")
SERVICE_ALREADY_EXIST = (21007, "service already exist")
SERVICE_NOT_EXIST = (21008, "service not exist")
SERVICE_DELETE_FAILURE = (21009, "service delete failure")
HEALTH_CHECK_STILL_RUNNING = (21011, "health check still running")
SERVER_ERROR = (30000, "server error")

ErrorCode = tuple[int, str]

# The registry's refusals (nacos_actors.core: registry, writes, definitions) by how their
# message starts, in the order tried; anything else is judged by its status.
REFUSAL_CODES: tuple[tuple[str, ErrorCode], ...] = (
    # An instance write to a missing service; Nacos says `serviceName: ` of a service query.
    ("service not found, namespace: ", INSTANCE_ERROR),
    ("specified service already exists", SERVICE_ALREADY_EXIST),
    ("specified service not exist", SERVICE_NOT_EXIST),
    ("service not found", SERVICE_NOT_EXIST),
    ("health check is still working", HEALTH_CHECK_STILL_RUNNING),
    ("instance not found", INSTANCE_NOT_FOUND),
    ("instance not exist", INSTANCE_NOT_FOUND),
)


def success(data: Any) -> web.Response:
    """HTTP 200 with `data` in Nacos's success envelope."""
    return enveloped(200, SUCCESS, data)


def enveloped(status: int, code: ErrorCode, data: Any) -> web.Response:
    """`data` in the envelope with `code`, answered as `status`. A message that echoes bytes
    which were not UTF-8 (lone surrogates, which JSON cannot carry) shows them as escapes."""
    if isinstance(data, str) and not is_valid_utf8(data):
        data = data.encode("utf-8", "backslashreplace").decode("utf-8")
    body = dumps({"code": code[0], "message": code[1], "data": data})
    return web.Response(status=status, body=body, content_type="application/json")


def param_error_code(error: ParamError) -> ErrorCode:
    """Nacos's code for a parameter the edge refused: missing, forbidden, not found, or invalid."""
    if isinstance(error, MissingParam):
        return PARAMETER_MISSING
    if error.status == 403:
        return ACCESS_DENIED
    if error.status == 404:
        return RESOURCE_NOT_FOUND
    if error.message.startswith("Param 'weight'"):
        return WEIGHT_ERROR
    return PARAMETER_VALIDATE_ERROR


def refusal_code(status: int, message: str) -> ErrorCode:
    """Nacos's code for a write the registry refused with `status` and `message`."""
    for start, code in REFUSAL_CODES:
        if message.startswith(start) and (code != INSTANCE_ERROR or ", serviceName: " not in message):
            return code
    if message.startswith("service ") and message.endswith(("not found!", "is not found!")):
        return SERVICE_NOT_EXIST
    if "is not empty" in message or "has instances" in message:
        return SERVICE_DELETE_FAILURE
    if status == 404:
        return RESOURCE_NOT_FOUND
    if status >= 500:
        return SERVER_ERROR
    return PARAMETER_VALIDATE_ERROR
