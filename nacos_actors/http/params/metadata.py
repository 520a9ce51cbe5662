"""Structured parameters: JSON values (`json_value`), Nacos metadata (a JSON object or
`k1=v1,k2=v2`) and its size limits (`within_limit`), a service's selector and protect
threshold, and a cluster's health checker. Each is normalised as Nacos stores it; a bad one is
a ParamError naming the parameter. Pure functions (event loop thread)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import orjson

from nacos_actors.http.params.base import ParamError, Params, clip, number, parse_integer, required
from nacos_actors.model import (
    HEALTH_CHECKER_TYPES,
    HTTP_CHECKER,
    MYSQL_CHECKER,
    NO_SELECTOR,
    Selector,
    freeze,
    metadata_size,
)

INSTANCE_METADATA_LIMIT = "max_instance_metadata_bytes"
SERVICE_METADATA_LIMIT = "max_service_metadata_bytes"
M = TypeVar("M", bound=Mapping[str, str] | None)


def metadata(params: Params) -> Mapping[str, str] | None:
    """Nacos metadata: a JSON object, else `k1=v1,k2=v2`. None when not given."""
    raw = params.get("metadata")
    return None if raw is None else parse_metadata(raw, "metadata")


def within_limit(metadata: M, limit: int, setting: str, name: str = "metadata") -> M:
    """`metadata` (None passes) if its size, the UTF-8 bytes of its keys and values, is at most
    `limit` (0: no limit); else a 400 naming the parameter and the `setting` that limits it."""
    if limit and metadata is not None:
        size = metadata_size(metadata)
        if size > limit:
            raise ParamError(
                f"Param '{name}' holds {size} bytes of keys and values, over the limit of {limit} ({setting})."
            )
    return metadata


def parse_metadata(raw: str, name: str) -> Mapping[str, str]:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _parse_pairs(raw, name)
    return metadata_object(document, name)


def metadata_object(document: Any, name: str) -> Mapping[str, str]:
    """A JSON object whose values are strings (numbers and booleans become strings, as Jackson)."""
    if not isinstance(document, dict):
        raise ParamError(f"Param '{name}' must be a JSON object or k1=v1,k2=v2.")
    result: dict[str, str] = {}
    for key, value in document.items():
        if isinstance(value, str):
            result[key] = value
        elif isinstance(value, bool):
            result[key] = "true" if value else "false"
        elif isinstance(value, (int, float)):
            result[key] = str(value)
        else:
            raise ParamError(f"Param '{name}' values must be strings, got {type_name(value)} for key '{clip(key)}'.")
    return freeze(result)


def _parse_pairs(raw: str, name: str) -> Mapping[str, str]:
    result: dict[str, str] = {}
    for pair in raw.split(","):
        parts = pair.split("=")
        if len(parts) != 2 or not parts[0].strip():
            raise ParamError(f"Param '{name}' format incorrect: '{clip(raw)}' (want a JSON object or k1=v1,k2=v2).")
        result[parts[0].strip()] = parts[1].strip()
    return freeze(result)


def type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", type(None): "null"}.get(type(value), type(value).__name__)


def json_value(params: Params, name: str) -> Any:
    """A parameter holding JSON, parsed; None when absent."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ParamError(f"Param '{name}' is not valid JSON.") from None


def selector(params: Params) -> Selector | None:
    if params.get("selector") is None:
        return None
    document = json_value(params, "selector")
    if not isinstance(document, dict) or document.get("type") not in ("none", "label"):
        raise ParamError("Param 'selector' must be a JSON object with type 'none' or 'label'.")
    expression = document.get("expression", "")
    if not isinstance(expression, str):
        raise ParamError("Param 'selector' expression must be a string.")
    return NO_SELECTOR if document["type"] == "none" else Selector("label", expression)


HTTP_CHECKER_DEFAULTS: Mapping[str, Any] = freeze({"path": "", "headers": "", "expectedResponseCode": 200})
MYSQL_CHECKER_FIELDS = ("user", "pwd", "cmd")


def health_checker(params: Params) -> Mapping[str, Any]:
    """A required health checker JSON object, normalised as Nacos stores it (its `type` first)."""
    required(params, "healthChecker")
    return parse_health_checker(json_value(params, "healthChecker"), "healthChecker")


def parse_health_checker(document: Any, name: str) -> Mapping[str, Any]:
    """`{"type": TCP|HTTP|MYSQL|NONE, ...}`: Nacos's fields for that type, unknown ones dropped.

    HTTP keeps `path`, `headers` (strings, default "") and `expectedResponseCode` (default
    200); MYSQL keeps the given `user`, `pwd`, `cmd` strings. Nacos takes an unknown or
    missing type as NONE, which would silently switch checks off; here it is a 400.
    """
    kinds = ", ".join(HEALTH_CHECKER_TYPES)
    if not isinstance(document, dict) or document.get("type") not in HEALTH_CHECKER_TYPES:
        raise ParamError(f"Param '{name}' must be a JSON object whose type is one of {kinds}.")
    kind = document["type"]
    normalised: dict[str, Any] = {"type": kind}
    if kind == HTTP_CHECKER:
        for field_name, default in HTTP_CHECKER_DEFAULTS.items():
            value = document.get(field_name)
            if value is None:
                normalised[field_name] = default
            elif field_name == "expectedResponseCode":
                normalised[field_name] = parse_integer(value, f"{name}.{field_name}", 100, 599)
            elif isinstance(value, str):
                normalised[field_name] = value
            else:
                raise ParamError(f"Param '{name}' field '{field_name}' must be a string, got {type_name(value)}.")
    elif kind == MYSQL_CHECKER:
        for field_name in MYSQL_CHECKER_FIELDS:
            value = document.get(field_name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise ParamError(f"Param '{name}' field '{field_name}' must be a string, got {type_name(value)}.")
            normalised[field_name] = value
    return freeze(normalised)


def protect_threshold(params: Params, required_param: bool) -> float:
    raw = required(params, "protectThreshold") if required_param else params.get("protectThreshold")
    return 0.0 if raw is None else number(raw, "protectThreshold", 0.0, 1.0)
