"""The value rules every stored value obeys, wherever it comes from: a client's request (through
nacos_actors.http.params), a peer's body or a data file (through nacos_actors.core.codec).

One rule per kind of value: names (namespace, group, service, cluster), addresses (an IP
literal or a host name), ports, weights and other bounded numbers, free text (metadata keys and
values, `app`, a selector's expression: no control characters, nothing that was not valid
UTF-8), metadata maps and health checkers. A value that breaks its rule raises InvalidValue
naming the field; the HTTP edge turns it into a 400 `Param '<field>' <problem>`, the codec into
a CodecError naming the entry. Pure functions of their arguments: any thread.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from nacos_actors.model import GROUP_SEPARATOR, HEALTH_CHECKER_TYPES, HTTP_CHECKER, MYSQL_CHECKER, freeze

MAX_NAME_LENGTH = 255
MAX_GROUP_LENGTH = 128
MAX_NAMESPACE_LENGTH = 128
MAX_CLUSTER_LENGTH = 64
MAX_APP_LENGTH = 128
MAX_WEIGHT = 10000.0
MIN_PORT, MAX_PORT = 1, 65535

# `\Z`, not `$`: `$` also matches before a trailing newline.
_NAME = re.compile(r"^[0-9A-Za-z.:_-]+\Z")
_NAMESPACE = re.compile(r"^[0-9A-Za-z_-]+\Z")
_CLUSTER = re.compile(r"^[0-9A-Za-z-]+\Z")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?\Z"
)
_DIGITS_AND_DOTS = re.compile(r"^[0-9.]+\Z")
_INTEGER = re.compile(r"[+-]?[0-9]{1,19}")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Control characters (C0, DEL, C1) and lone surrogates: the query decoder turns bytes that are
# not UTF-8 into U+DC80..U+DCFF (Python's surrogateescape), so they are found here too.
_NOT_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class InvalidValue(ValueError):
    """A value that breaks its rule: `field` names it, `problem` says what is wrong (a sentence
    that follows the field's name, e.g. "must be in 1..65535, got 0.")."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"'{field}' {problem}")
        self.field = field
        self.problem = problem


def clip(text: str, limit: int = 64) -> str:
    """At most `limit` characters of a bad value, to echo in a message; bytes that were not
    UTF-8 (lone surrogates) are shown as `\\udcff` escapes, so the message can be sent."""
    clipped = text if len(text) <= limit else text[:limit] + "..."
    if _SURROGATE.search(clipped):
        return clipped.encode("utf-8", "backslashreplace").decode("utf-8")
    return clipped


def printable(text: str) -> str:
    """`text` with control characters and lone surrogates written as escapes (`\\x00`), for a
    message that may reach a log line or a terminal."""
    return _NOT_TEXT.sub(lambda found: found.group().encode("unicode_escape", "backslashreplace").decode(), text)


def type_name(value: Any) -> str:
    return {dict: "an object", list: "an array", type(None): "null"}.get(type(value), type(value).__name__)


# -- free text ------------------------------------------------------------------------------


def check_text(value: str, field: str) -> str:
    """Free text (metadata keys and values, `app`, a selector's expression, a checker's
    strings, an instance id): no control character (U+0000..U+001F, U+007F..U+009F, tab and
    line breaks included) and nothing that was not valid UTF-8. Nacos refuses neither (2.x
    only caps metadata at 1024 characters); both end up in logs, consoles, Prometheus labels
    and the JSON clients parse."""
    found = _NOT_TEXT.search(value)
    if found is None:
        return value
    if _SURROGATE.search(value):
        raise InvalidValue(field, "is not valid UTF-8 text.")
    raise InvalidValue(field, f"must not contain control characters, got U+{ord(found.group()):04X}.")


def is_valid_utf8(value: str) -> bool:
    """Whether `value` holds no byte that failed to decode (see check_text)."""
    return _SURROGATE.search(value) is None


# -- names ----------------------------------------------------------------------------------


def check_namespace(raw: str, field: str) -> str:
    if len(raw) > MAX_NAMESPACE_LENGTH or not _NAMESPACE.match(raw):
        raise InvalidValue(field, f"must be 1..{MAX_NAMESPACE_LENGTH} characters of 0-9a-zA-Z_-, got '{clip(raw)}'.")
    return raw


def check_group(raw: str, field: str) -> str:
    if len(raw) > MAX_GROUP_LENGTH or not _NAME.match(raw):
        raise InvalidValue(field, f"must be 1..{MAX_GROUP_LENGTH} characters of 0-9a-zA-Z.:_-, got '{clip(raw)}'.")
    return raw


def check_service_name(raw: str, field: str) -> str:
    """A bare service name (no `group@@`): 1..255 characters of 0-9a-zA-Z.:_-."""
    if len(raw) > MAX_NAME_LENGTH or not _NAME.match(raw):
        raise InvalidValue(field, f"must be 1..{MAX_NAME_LENGTH} characters of 0-9a-zA-Z.:_-, got '{clip(raw)}'.")
    return raw


def check_grouped_name(raw: str, field: str) -> str:
    """A stored service name: exactly one `group@@name`, each part as check_group and
    check_service_name want it (what the edge makes of any service name it accepts)."""
    group, separator, bare = raw.partition(GROUP_SEPARATOR)
    if not separator or GROUP_SEPARATOR in bare:
        raise InvalidValue(field, f"must be one 'group@@name', got '{clip(raw)}'.")
    check_group(group, field)
    check_service_name(bare, field)
    return raw


def check_cluster(raw: str, field: str) -> str:
    if len(raw) > MAX_CLUSTER_LENGTH or not _CLUSTER.match(raw):
        raise InvalidValue(field, f"must be 1..{MAX_CLUSTER_LENGTH} characters of 0-9a-zA-Z-, got '{clip(raw)}'.")
    return raw


# -- addresses and numbers ------------------------------------------------------------------


def parse_ip(raw: Any, field: str) -> str:
    """An IPv4 or IPv6 address (IPv6 compressed), or a host name (Nacos allows names;
    digits-and-dots must be IPv4)."""
    if not isinstance(raw, str) or not raw:
        raise InvalidValue(field, "must be an IP address or host name.")
    return _parse_address(raw.strip(), field)


# Every beat and register names an address; the same few thousand come again and again, and
# `ipaddress` costs microseconds. Only valid addresses are kept (a refusal raises, uncached).
@lru_cache(maxsize=1 << 16)
def _parse_address(text: str, field: str) -> str:
    try:
        return str(ipaddress.ip_address(text)) if ":" in text else _ipv4_or_name(text, field)
    except ValueError:
        raise InvalidValue(field, f"is not a valid IP address: '{clip(text)}'.") from None


def _ipv4_or_name(text: str, field: str) -> str:
    if _DIGITS_AND_DOTS.match(text):
        ipaddress.IPv4Address(text)
        return text
    if not _HOSTNAME.match(text):
        raise InvalidValue(field, f"must be an IP address or host name, got '{clip(text)}'.")
    return text


def is_ip_literal(text: str) -> bool:
    """An IPv4 or IPv6 address (not a host name)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_integer(raw: Any, field: str, low: int, high: int) -> int:
    """A whole number in low..high: an int, an integral float, or its decimal text."""
    if isinstance(raw, bool):
        raise InvalidValue(field, f"must be a whole number, got '{clip(str(raw))}'.")
    if isinstance(raw, int):
        number = raw
    elif isinstance(raw, float) and raw.is_integer():
        number = int(raw)
    else:
        text = str(raw).strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 19) and not _INTEGER.fullmatch(text):
            raise InvalidValue(field, f"must be a whole number, got '{clip(text)}'.")
        number = int(text)
    if not low <= number <= high:
        raise InvalidValue(field, f"must be in {low}..{high}, got {clip(str(number))}.")
    return number


def parse_number(raw: Any, field: str, low: float, high: float) -> float:
    """A finite decimal number in low..high: an int, a float, or its decimal text."""
    if isinstance(raw, bool):
        raise InvalidValue(field, f"must be a number, got '{raw}'.")
    if isinstance(raw, str) and not _DECIMAL.fullmatch(raw.strip()):
        # float() would also take '1_0', non-ASCII digits and 'nan'
        raise InvalidValue(field, f"must be a number, got '{clip(raw)}'.")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidValue(field, f"must be a number, got '{clip(str(raw))}'.") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise InvalidValue(field, f"must be a finite number in {low:g}..{high:g}, got '{clip(str(raw))}'.")
    return value


def check_port(raw: Any, field: str) -> int:
    return parse_integer(raw, field, MIN_PORT, MAX_PORT)


def check_weight(raw: Any, field: str) -> float:
    return parse_number(raw, field, 0.0, MAX_WEIGHT)


def check_protect_threshold(raw: Any, field: str) -> float:
    return parse_number(raw, field, 0.0, 1.0)


def check_app(raw: str, field: str) -> str:
    if len(raw) > MAX_APP_LENGTH:
        raise InvalidValue(field, f"must be at most {MAX_APP_LENGTH} characters.")
    return check_text(raw, field)


# -- structured values ----------------------------------------------------------------------


def check_metadata(mapping: Mapping[Any, Any], field: str) -> Mapping[str, str]:
    """A metadata map of text keys to text values (see check_text), read-only."""
    for key, value in mapping.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidValue(field, f"keys and values must be strings, got {type_name(value)} for key '{key!s:.64}'.")
        check_text(key, field)
        check_text(value, field)
    return freeze(mapping)


SELECTOR_TYPES = ("none", "label")


def check_selector_expression(raw: str, field: str) -> str:
    return check_text(raw, field)


HTTP_CHECKER_DEFAULTS: Mapping[str, Any] = freeze({"path": "", "headers": "", "expectedResponseCode": 200})
MYSQL_CHECKER_FIELDS = ("user", "pwd", "cmd")
MAX_CHECKER_PATH_LENGTH = 2048
MAX_CHECKER_HEADERS_LENGTH = 4096
MAX_CHECKER_COMMAND_LENGTH = 4096
# RFC 7230's field-name: a token of tchar (its `|` can never reach here: it separates entries).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_WHITESPACE = re.compile(r"\s")


def check_checker_path(raw: str, field: str) -> str:
    """An HTTP checker's `path`: "" (probe `/`), or an absolute path with an optional query
    (`/health?full=1`) that can only ever be resolved against the instance's own address.

    Nacos resolves the path against `http://ip:port` as a URL, so `http://other-host/x` or
    `//other-host/x` would probe another host; refused here: the path must not start with `//`,
    and holds no `://` before its query, no `\\` (read as `/` by browsers' URL rules), no
    `#`, no whitespace or control characters, at most MAX_CHECKER_PATH_LENGTH characters. A
    relative path (`health`) is read as Nacos's URL resolution reads it: from the root
    (`/health`)."""
    if raw == "":
        return raw
    check_text(raw, field)
    if len(raw) > MAX_CHECKER_PATH_LENGTH:
        raise InvalidValue(field, f"must be at most {MAX_CHECKER_PATH_LENGTH} characters.")
    if not raw.startswith("/"):
        raw = "/" + raw  # Nacos resolves a relative path against the instance's root URL
    if raw.startswith("//"):
        raise InvalidValue(field, f"must not start with '//' (it would name another host), got '{clip(raw)}'.")
    if "://" in raw.partition("?")[0]:
        raise InvalidValue(field, f"must not contain '://' (it could name another host), got '{clip(raw)}'.")
    if "\\" in raw:
        raise InvalidValue(field, f"must not contain '\\' (read as '/' by some URL parsers), got '{clip(raw)}'.")
    if "#" in raw:
        raise InvalidValue(field, f"must not contain '#' (a fragment is never sent), got '{clip(raw)}'.")
    if _WHITESPACE.search(raw):
        raise InvalidValue(field, f"must not contain whitespace, got '{clip(raw)}'.")
    return raw


def checker_headers(raw: str, field: str) -> tuple[tuple[str, str], ...]:
    """The request headers an HTTP checker's `headers` text names: `name:value` entries
    separated by `|` (Nacos's format), each name an RFC 7230 token and each value free of
    control characters, both trimmed; blank entries are skipped (Nacos ignores them). The value
    is everything after the entry's first `:` (Nacos drops an entry with a second `:`; here
    `Referer:http://a` is the header it reads as). Anything else raises InvalidValue, so a
    stored text always yields exactly the headers it shows."""
    check_text(raw, field)  # no CR, LF or other control character anywhere, valid UTF-8
    if len(raw) > MAX_CHECKER_HEADERS_LENGTH:
        raise InvalidValue(field, f"must be at most {MAX_CHECKER_HEADERS_LENGTH} characters.")
    headers = []
    for entry in raw.split("|"):
        if not entry.strip():
            continue
        name, colon, value = entry.partition(":")
        name = name.strip()
        if not colon or not _HEADER_NAME.match(name):
            raise InvalidValue(
                field,
                "must be 'name:value' entries separated by '|', each name a header token "
                f"(letters, digits, !#$%&'*+.^_`~-), got '{clip(entry)}'.",
            )
        headers.append((name, value.strip()))
    return tuple(headers)


def parse_health_checker(document: Any, field: str) -> Mapping[str, Any]:
    """`{"type": TCP|HTTP|MYSQL|NONE, ...}`: Nacos's fields for that type, unknown ones dropped.

    HTTP keeps `path` (see check_checker_path), `headers` (see checker_headers; both strings,
    default "") and `expectedResponseCode` (100..599, default 200); MYSQL keeps the given
    `user`, `pwd`, `cmd` strings (`cmd` at most MAX_CHECKER_COMMAND_LENGTH characters). A bad
    field raises InvalidValue naming `<field>.<name>`. Nacos takes an unknown or missing type
    as NONE, which would silently switch checks off; here it is refused.
    """
    kinds = ", ".join(HEALTH_CHECKER_TYPES)
    if not isinstance(document, dict) or document.get("type") not in HEALTH_CHECKER_TYPES:
        raise InvalidValue(field, f"must be a JSON object whose type is one of {kinds}.")
    kind = document["type"]
    normalised: dict[str, Any] = {"type": kind}
    if kind == HTTP_CHECKER:
        for field_name, default in HTTP_CHECKER_DEFAULTS.items():
            value = document.get(field_name)
            named = f"{field}.{field_name}"
            if value is None:
                normalised[field_name] = default
            elif field_name == "expectedResponseCode":
                normalised[field_name] = parse_integer(value, named, 100, 599)
            elif not isinstance(value, str):
                raise InvalidValue(field, f"field '{field_name}' must be a string, got {type_name(value)}.")
            elif field_name == "path":
                normalised[field_name] = check_checker_path(value, named)
            else:
                checker_headers(value, named)
                normalised[field_name] = value
    elif kind == MYSQL_CHECKER:
        for field_name in MYSQL_CHECKER_FIELDS:
            value = document.get(field_name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise InvalidValue(field, f"field '{field_name}' must be a string, got {type_name(value)}.")
            named = f"{field}.{field_name}"
            if field_name == "cmd" and len(value) > MAX_CHECKER_COMMAND_LENGTH:
                raise InvalidValue(named, f"must be at most {MAX_CHECKER_COMMAND_LENGTH} characters.")
            normalised[field_name] = check_text(value, named)
    return freeze(normalised)
