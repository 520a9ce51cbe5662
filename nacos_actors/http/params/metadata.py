"""Structured parameters: JSON values (`json_value`), Nacos metadata (a JSON object or
`k1=v1,k2=v2`) and its size limits (`within_limit`), a service's selector and protect
threshold, and a cluster's health checker. Each is normalised as Nacos stores it; a bad one is
a ParamError naming the parameter. Pure functions (event loop thread)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import orjson

from nacos_actors.core import values
from nacos_actors.core.values import clip, type_name
from nacos_actors.http.params.base import ParamError, Params, at_the_edge, required
from nacos_actors.model import NO_SELECTOR, Selector, metadata_size

parse_health_checker = at_the_edge(values.parse_health_checker)
check_protect_threshold = at_the_edge(values.check_protect_threshold)
check_metadata = at_the_edge(values.check_metadata)
check_selector_expression = at_the_edge(values.check_selector_expression)

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
    utf8_text(raw, name)
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
    return check_metadata(result, name)


def _parse_pairs(raw: str, name: str) -> Mapping[str, str]:
    result: dict[str, str] = {}
    for pair in raw.split(","):
        parts = pair.split("=")
        if len(parts) != 2 or not parts[0].strip():
            raise ParamError(f"Param '{name}' format incorrect: '{clip(raw)}' (want a JSON object or k1=v1,k2=v2).")
        result[parts[0].strip()] = parts[1].strip()
    return check_metadata(result, name)


def utf8_text(raw: str, name: str) -> str:
    """`raw`, unless some of its bytes were not UTF-8 (a 400 saying so, not "not valid JSON")."""
    if not values.is_valid_utf8(raw):
        raise ParamError(f"Param '{name}' is not valid UTF-8 text.")
    return raw


def json_value(params: Params, name: str) -> Any:
    """A parameter holding JSON, parsed; None when absent."""
    raw = params.get(name)
    if raw is None:
        return None
    utf8_text(raw, name)
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
    if document["type"] == "none":
        return NO_SELECTOR
    return Selector("label", check_selector_expression(expression, "selector"))


def health_checker(params: Params) -> Mapping[str, Any]:
    """A required health checker JSON object, normalised as Nacos stores it (its `type` first;
    see nacos_actors.core.values.parse_health_checker)."""
    required(params, "healthChecker")
    return parse_health_checker(json_value(params, "healthChecker"), "healthChecker")


def protect_threshold(params: Params, required_param: bool) -> float:
    raw = required(params, "protectThreshold") if required_param else params.get("protectThreshold")
    return 0.0 if raw is None else check_protect_threshold(raw, "protectThreshold")
