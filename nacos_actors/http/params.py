"""Request parameters parsed once, at the edge, into typed values.

Nacos reads parameters with `getParameter`, so they may come in the query string or in an
`application/x-www-form-urlencoded` body, for every verb; `Params` merges both (query first).
Values are trimmed and a blank value counts as absent. Every parser raises ParamError, whose
message names the parameter, so a bad request gets a 400 and reaches no actor. Pure functions:
they run on the event loop thread but touch nothing but their arguments.
"""

from __future__ import annotations

import ipaddress
import math
import re
from functools import lru_cache
from typing import Any, Callable, Generic, Mapping, NamedTuple, TypeVar
from urllib.parse import parse_qsl

import orjson

from nacos_actors.model import (
    DEFAULT_APP,
    DEFAULT_CLUSTER,
    DEFAULT_GROUP,
    DEFAULT_NAMESPACE,
    GROUP_SEPARATOR,
    HEALTH_CHECKER_TYPES,
    HTTP_CHECKER,
    MYSQL_CHECKER,
    NO_SELECTOR,
    Instance,
    InstanceKey,
    Selector,
    ServiceKey,
    default_instance_id,
    freeze,
    grouped_name,
)

MAX_NAME_LENGTH = 255
MAX_GROUP_LENGTH = 128
MAX_NAMESPACE_LENGTH = 128
MAX_CLUSTER_LENGTH = 64
MAX_APP_LENGTH = 128
MAX_WEIGHT = 10000.0
MAX_INT32 = 2**31 - 1

# `\Z`, not `$`: `$` also matches before a trailing newline.
_NAME = re.compile(r"^[0-9A-Za-z.:_-]+\Z")
_INTEGER = re.compile(r"[+-]?[0-9]{1,19}")
_NAMESPACE = re.compile(r"^[0-9A-Za-z_-]+\Z")
_CLUSTER = re.compile(r"^[0-9A-Za-z-]+\Z")
_HOSTNAME = re.compile(r"^(?=.{1,253}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?\Z")
_DIGITS_AND_DOTS = re.compile(r"^[0-9.]+\Z")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TRUE = "true"
_FALSE = "false"


T = TypeVar("T")
# Sized to the beats one node answers: about 25k/s here, so ~125k instances beating every 5 s.
MEMO_QUERIES = 1 << 17
MEMO_QUERY_LENGTH = 1024


class ParamError(Exception):
    """A request parameter that cannot be used: answered as `status` with `message`."""

    def __init__(self, message: str, status: int = 400, close_connection: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        # Set when the rest of the body cannot be read, so the connection cannot be reused.
        self.close_connection = close_connection


class Params:
    """The merged, trimmed query and form parameters of one request.

    Each source maps a name to its first value (as Java's getParameter takes it): see
    `query_values`. `get(name)` is the value of `name`, trimmed, from the first source where it
    is not blank (the query before the form), or None. The values are merged into one dict up
    front, so each `get` is a C dict lookup.
    """

    __slots__ = ("get",)

    def __init__(self, *sources: Mapping[str, str]) -> None:
        values: dict[str, str]
        if len(sources) == 1:
            values = {name: value for name, raw in sources[0].items() if (value := raw.strip())}
        else:
            values = {}
            for source in sources:
                for name, raw in source.items():
                    if name not in values:
                        value = raw.strip()
                        if value:
                            values[name] = value
        self.get: Callable[[str], str | None] = values.get

    def first(self, *names: str) -> str | None:
        """The value of the first of `names` that is given (for Nacos's legacy aliases)."""
        for name in names:
            value = self.get(name)
            if value is not None:
                return value
        return None


def query_values(encoded: str, encoding: str = "utf-8") -> dict[str, str]:
    """The first value of each name in a raw (still percent-encoded) query string or form body,
    decoded as urllib's `parse_qsl(keep_blank_values=True)` and yarl's `URL.query` decode it:
    `+` is a space, `%XX` bytes in `encoding` with bad ones replaced; a name without `=` has the
    empty value.

    Skips yarl's MultiDict, which a request's parameters do not need: each source keeps one
    value per name. Pure.
    """
    values: dict[str, str] = {}
    if "%" in encoded:
        for name, value in parse_qsl(encoded, keep_blank_values=True, encoding=encoding):
            if name not in values:
                values[name] = value
        return values
    # Nothing to decode but '+', the same in every encoding.
    for part in encoded.replace("+", " ").split("&"):
        name, _, value = part.partition("=")
        if part and name not in values:
            values[name] = value
    return values


class QueryMemo(Generic[T]):
    """What `parse` makes of a request's parameters, remembered by the raw query string.

    Only for requests whose parameters all come in the query (no body): `parse` is a pure
    function of the parameters, so a client that polls or beats with the same URL pays for
    validation once. A query that fails raises ParamError every time and is never remembered.
    Holds at most `limit` queries of at most MEMO_QUERY_LENGTH characters; when full it starts
    afresh (amortised O(1), no per-entry bookkeeping). Event loop thread only.
    """

    __slots__ = ("parse", "known", "_limit")

    def __init__(self, parse: Callable[[Params], T], limit: int = MEMO_QUERIES) -> None:
        self.parse = parse
        self.known: dict[str, T] = {}
        self._limit = limit

    def remember(self, query: str, params: Params) -> T:
        """`parse(params)`, kept under `query` (the raw query string those params came from)."""
        value = self.parse(params)
        if len(query) <= MEMO_QUERY_LENGTH:
            if len(self.known) >= self._limit:
                self.known.clear()
            self.known[query] = value
        return value


def required(params: Params, name: str) -> str:
    value = params.get(name)
    if value is None:
        raise ParamError(f"Param '{name}' is required.")
    return value


def boolean(params: Params, default: bool, *names: str) -> bool:
    """`true` or `false` in any case; anything else is a 400 naming the parameter."""
    raw = params.first(*names)
    return default if raw is None else parse_boolean(raw, names[0])


def required_boolean(params: Params, *names: str) -> bool:
    """`true` or `false` from the first of `names` given; none given is 'Param <first> is required.'"""
    for name in names:
        raw = params.get(name)
        if raw is not None:
            return parse_boolean(raw, name)
    raise ParamError(f"Param '{names[0]}' is required.")


def parse_boolean(raw: str, name: str) -> bool:
    lowered = raw.lower()
    if lowered == _TRUE:
        return True
    if lowered == _FALSE:
        return False
    raise ParamError(f"Param '{name}' must be true or false, got '{clip(raw)}'.")


def integer(params: Params, name: str, default: int | None, low: int, high: int) -> int:
    """A whole number in low..high; required when `default` is None."""
    raw = params.get(name) if default is not None else required(params, name)
    if raw is None:
        return default  # type: ignore[return-value]
    return parse_integer(raw, name, low, high)


def parse_integer(raw: Any, name: str, low: int, high: int) -> int:
    if isinstance(raw, bool):
        raise ParamError(f"Param '{name}' must be a whole number, got '{clip(str(raw))}'.")
    if isinstance(raw, int):
        number = raw
    elif isinstance(raw, float) and raw.is_integer():
        number = int(raw)
    else:
        text = str(raw).strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 19) and not _INTEGER.fullmatch(text):
            raise ParamError(f"Param '{name}' must be a whole number, got '{clip(text)}'.")
        number = int(text)
    if not low <= number <= high:
        raise ParamError(f"Param '{name}' must be in {low}..{high}, got {clip(str(number))}.")
    return number


def number(raw: Any, name: str, low: float, high: float) -> float:
    """A finite decimal number in low..high."""
    if isinstance(raw, bool):
        raise ParamError(f"Param '{name}' must be a number, got '{raw}'.")
    if isinstance(raw, str) and not _DECIMAL.fullmatch(raw.strip()):
        # float() would also take '1_0', non-ASCII digits and 'nan'
        raise ParamError(f"Param '{name}' must be a number, got '{clip(raw)}'.")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ParamError(f"Param '{name}' must be a number, got '{clip(str(raw))}'.") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ParamError(f"Param '{name}' must be a finite number in {low:g}..{high:g}, got '{clip(str(raw))}'.")
    return value


def port(params: Params, name: str = "port") -> int:
    return integer(params, name, None, 1, 65535)


def weight(params: Params, default: float = 1.0) -> float:
    raw = params.get("weight")
    return default if raw is None else number(raw, "weight", 0.0, MAX_WEIGHT)


def clip(text: str, limit: int = 64) -> str:
    """Echo at most `limit` characters of a bad value back in an error message."""
    return text if len(text) <= limit else text[:limit] + "..."


# -- names -------------------------------------------------------------------------------


def namespace(params: Params) -> str:
    raw = params.get("namespaceId")
    return DEFAULT_NAMESPACE if raw is None else parse_namespace(raw, "namespaceId")


def parse_namespace(raw: str, name: str) -> str:
    if len(raw) > MAX_NAMESPACE_LENGTH or not _NAMESPACE.match(raw):
        raise ParamError(
            f"Param '{name}' must be 1..{MAX_NAMESPACE_LENGTH} characters of 0-9a-zA-Z_-, got '{clip(raw)}'."
        )
    return raw


def group(params: Params, name: str = "groupName") -> str:
    raw = params.get(name)
    return DEFAULT_GROUP if raw is None else check_group(raw, name)


def check_group(raw: str, name: str) -> str:
    if len(raw) > MAX_GROUP_LENGTH or not _NAME.match(raw):
        raise ParamError(
            f"Param '{name}' must be 1..{MAX_GROUP_LENGTH} characters of 0-9a-zA-Z.:_-, got '{clip(raw)}'."
        )
    return raw


def check_service_name(raw: str, name: str) -> str:
    """A bare service name (no `group@@`): 1..255 characters of 0-9a-zA-Z.:_-."""
    if len(raw) > MAX_NAME_LENGTH or not _NAME.match(raw):
        raise ParamError(
            f"Param '{name}' must be 1..{MAX_NAME_LENGTH} characters of 0-9a-zA-Z.:_-, got '{clip(raw)}'."
        )
    return raw


def grouped_service_name(raw: str, group_param: str | None, name: str = "serviceName") -> str:
    """Nacos's `group@@name` from a service name that may already carry its group."""
    if GROUP_SEPARATOR in raw:
        group_part, _, bare = raw.partition(GROUP_SEPARATOR)
        if GROUP_SEPARATOR in bare:
            raise ParamError(f"Param '{name}' is illegal, it should be format as 'groupName@@serviceName'.")
        if not group_part:
            raise ParamError(f"Param '{name}' is illegal, groupName can't be empty.")
        if not bare:
            raise ParamError(f"Param '{name}' is illegal, serviceName can't be empty.")
        check_group(group_part, name)
    else:
        group_part = DEFAULT_GROUP if group_param is None else check_group(group_param, "groupName")
        bare = raw
    if len(bare) > MAX_NAME_LENGTH or not _NAME.match(bare):
        raise ParamError(
            f"Param '{name}' must be 1..{MAX_NAME_LENGTH} characters of 0-9a-zA-Z.:_- "
            f"(plus one 'group@@' prefix), got '{clip(raw)}'."
        )
    return grouped_name(group_part, bare)


def service_key(params: Params) -> ServiceKey:
    """The service a request names: namespaceId + serviceName (+ groupName)."""
    return _service_key(params.get("namespaceId"), params.get("serviceName"), params.get("groupName"))


@lru_cache(maxsize=4096)
def _service_key(namespace_id: str | None, name: str | None, group_param: str | None) -> ServiceKey:
    """Validated once per distinct name (a failure raises each time and is not cached)."""
    namespace = DEFAULT_NAMESPACE if namespace_id is None else parse_namespace(namespace_id, "namespaceId")
    if name is None:
        raise ParamError("Param 'serviceName' is required.")
    return ServiceKey(namespace, grouped_service_name(name, group_param))


def cluster(params: Params, *names: str) -> str:
    names = names or ("clusterName", "cluster")
    raw = params.first(*names)
    return DEFAULT_CLUSTER if raw is None else check_cluster(raw, names[0])


def check_cluster(raw: str, name: str) -> str:
    if len(raw) > MAX_CLUSTER_LENGTH or not _CLUSTER.match(raw):
        raise ParamError(
            f"Param '{name}' must be 1..{MAX_CLUSTER_LENGTH} characters of 0-9a-zA-Z-, got '{clip(raw)}'."
        )
    return raw


def cluster_list(params: Params) -> tuple[str, tuple[str, ...]]:
    """The `clusters` param: (the raw text, echoed to clients as given; the names, empty = all)."""
    raw = params.get("clusters")
    if raw is None:
        return "", ()
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    for part in names:
        check_cluster(part, "clusters")
    return raw, names


def ip(params: Params, name: str = "ip") -> str:
    return parse_ip(required(params, name), name)


def parse_ip(raw: Any, name: str) -> str:
    """An IPv4 or IPv6 address, or a host name (Nacos allows names; digits-and-dots must be IPv4)."""
    if not isinstance(raw, str) or not raw:
        raise ParamError(f"Param '{name}' must be an IP address or host name.")
    return _parse_address(raw.strip(), name)


# Every beat and register names an address; the same few thousand come again and again, and
# `ipaddress` costs microseconds. Only valid addresses are kept (a refusal raises, uncached).
@lru_cache(maxsize=1 << 16)
def _parse_address(text: str, name: str) -> str:
    try:
        return str(ipaddress.ip_address(text)) if ":" in text else _ipv4_or_name(text, name)
    except ValueError:
        raise ParamError(f"Param '{name}' is not a valid IP address: '{clip(text)}'.") from None


def is_ip_literal(text: str) -> bool:
    """An IPv4 or IPv6 address (not a host name)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _ipv4_or_name(text: str, name: str) -> str:
    if _DIGITS_AND_DOTS.match(text):
        ipaddress.IPv4Address(text)
        return text
    if not _HOSTNAME.match(text):
        raise ParamError(f"Param '{name}' must be an IP address or host name, got '{clip(text)}'.")
    return text


def app(params: Params) -> str:
    raw = params.get("app")
    if raw is None:
        return DEFAULT_APP
    if len(raw) > MAX_APP_LENGTH:
        raise ParamError(f"Param 'app' must be at most {MAX_APP_LENGTH} characters.")
    return raw


# -- structured values -------------------------------------------------------------------


def metadata(params: Params, name: str = "metadata") -> Mapping[str, str] | None:
    """Nacos metadata: a JSON object, else `k1=v1,k2=v2`. None when not given."""
    raw = params.get(name)
    return None if raw is None else parse_metadata(raw, name)


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
            result[key] = _TRUE if value else _FALSE
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


def beat(params: Params) -> dict[str, Any] | None:
    """The `beat` JSON object of a full beat; None for a light beat (no `beat` at all)."""
    if params.get("beat") is None:
        return None
    document = json_value(params, "beat")
    if not isinstance(document, dict):
        raise ParamError("Param 'beat' must be a JSON object.")
    return document


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


def health_checker(params: Params, name: str = "healthChecker") -> Mapping[str, Any]:
    """A required health checker JSON object, normalised as Nacos stores it (its `type` first)."""
    required(params, name)
    return parse_health_checker(json_value(params, name), name)


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


def page_number(params: Params, name: str, default: int | None = None) -> int:
    return integer(params, name, default, 1, MAX_INT32)


# -- instances ---------------------------------------------------------------------------


def instance(params: Params, service: ServiceKey | None = None) -> Instance:
    """The instance a register/update request describes, with Nacos's defaults. Given its
    service, it carries the simple instance id the registry would give a new one (saving the
    registry actor a copy of it); the registry still decides the id."""
    address, number, cluster_name = ip(params), port(params), cluster(params)
    return Instance(
        ip=address,
        port=number,
        cluster=cluster_name,
        weight=weight(params),
        healthy=boolean(params, True, "healthy"),
        enabled=boolean(params, True, "enabled", "enable"),
        ephemeral=boolean(params, True, "ephemeral"),
        metadata=metadata(params) or freeze({}),
        app=app(params),
        instance_id=""
        if service is None
        else default_instance_id(InstanceKey(address, number, cluster_name, True), service.name),
    )


def instance_key(params: Params) -> InstanceKey:
    return InstanceKey(ip(params), port(params), cluster(params), boolean(params, True, "ephemeral"))


class ListQuery(NamedTuple):
    """The parameters of GET /v1/ns/instance/list, validated."""

    service: ServiceKey
    clusters_text: str
    clusters: tuple[str, ...]
    healthy_only: bool
    udp_port: int
    client_ip: str | None
    app: str


def list_query(params: Params) -> ListQuery:
    """Validate an instance/list query (a push subscriber's `app` is kept to 128 characters)."""
    service = service_key(params)
    clusters_text, clusters = cluster_list(params)
    healthy_only = boolean(params, False, "healthyOnly")
    udp_port = integer(params, "udpPort", 0, 0, 65535)
    client_ip = params.get("clientIP")
    if client_ip is not None:
        client_ip = parse_ip(client_ip, "clientIP")
    return ListQuery(service, clusters_text, clusters, healthy_only, udp_port, client_ip, (params.get("app") or "")[:128])


class BeatQuery(NamedTuple):
    """The parameters of PUT /v1/ns/instance/beat, validated: see `beat_target`."""

    service: ServiceKey
    key: InstanceKey
    from_beat: Instance | None


def beat_query(params: Params) -> BeatQuery:
    service = service_key(params)
    return BeatQuery(service, *beat_target(params))


def beat_target(params: Params) -> tuple[InstanceKey, Instance | None]:
    """The instance a beat names and, for a full beat, the instance to register if it is unknown.

    A full beat's JSON `ip`, `port` and `cluster` override the parameters; a light beat names an
    ephemeral instance by `ip`, `port` and `clusterName`.
    """
    document = beat(params)
    default_cluster = cluster(params)
    if document is None:
        return InstanceKey(ip(params), port(params), default_cluster, True), None
    raw_ip = params.get("ip")
    from_beat = beat_instance(
        document,
        default_cluster,
        None if raw_ip is None else parse_ip(raw_ip, "ip"),
        None if params.get("port") is None else port(params),
    )
    return from_beat.key, from_beat


def beat_instance(document: Any, default_cluster: str, param_ip: str | None, param_port: int | None) -> Instance:
    """The instance a full beat describes (`beat` JSON overrides ip/port/cluster params)."""
    if not isinstance(document, dict):
        raise ParamError("Param 'beat' must be a JSON object.")
    raw_ip = document.get("ip", param_ip)
    raw_port = document.get("port", param_port)
    if raw_ip is None:
        raise ParamError("Param 'beat' must carry 'ip' (or give param 'ip').")
    if raw_port is None:
        raise ParamError("Param 'beat' must carry 'port' (or give param 'port').")
    raw_cluster = document.get("cluster") or default_cluster
    if not isinstance(raw_cluster, str):
        raise ParamError("Param 'beat' field 'cluster' must be a string.")
    raw_metadata = document.get("metadata")
    ephemeral = document.get("ephemeral", True)
    if not isinstance(ephemeral, bool):
        raise ParamError("Param 'beat' field 'ephemeral' must be true or false.")
    return Instance(
        ip=parse_ip(raw_ip, "beat.ip"),
        port=parse_integer(raw_port, "beat.port", 1, 65535),
        cluster=check_cluster(raw_cluster, "beat.cluster"),
        weight=number(document.get("weight", 1.0), "beat.weight", 0.0, MAX_WEIGHT),
        ephemeral=ephemeral,
        metadata=freeze({}) if raw_metadata is None else metadata_object(raw_metadata, "beat.metadata"),
    )


def instance_targets(document: Any) -> tuple[InstanceKey, ...]:
    """The `instances` JSON array of metadata/batch: `[{ip, port, clusterName, ephemeral}]`."""
    if not isinstance(document, list):
        raise ParamError("Param 'instances' must be a JSON array of {ip, port, clusterName, ephemeral}.")
    targets = []
    for item in document:
        if not isinstance(item, dict):
            raise ParamError("Param 'instances' items must be JSON objects.")
        raw_cluster = item.get("clusterName") or DEFAULT_CLUSTER
        ephemeral = item.get("ephemeral", True)
        if not isinstance(raw_cluster, str) or not isinstance(ephemeral, bool):
            raise ParamError("Param 'instances' items need a string clusterName and a boolean ephemeral.")
        targets.append(
            InstanceKey(
                parse_ip(item.get("ip"), "instances.ip"),
                parse_integer(item.get("port"), "instances.port", 1, 65535),
                check_cluster(raw_cluster, "instances.clusterName"),
                ephemeral,
            )
        )
    return tuple(targets)


def user_agent(headers: Mapping[str, str]) -> str:
    """Nacos's client agent: User-Agent, else Client-Version."""
    return headers.get("User-Agent") or headers.get("Client-Version") or ""


def accepts_gzip(headers: Mapping[str, str]) -> bool:
    """Whether `Accept-Encoding` lists gzip (or `*`) with a non-zero quality."""
    header = headers.get("Accept-Encoding")
    return bool(header) and _gzip_accepted(header)


@lru_cache(maxsize=256)
def _gzip_accepted(header: str) -> bool:
    for item in header.split(","):
        coding, _, parameters = item.partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        quality = parameters.strip().lower()
        if quality.startswith("q="):
            try:
                return float(quality[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def is_java_client(headers: Mapping[str, str]) -> bool:
    """A Java client (or one posing as one, like Node's) of version 1.0.0 or later.

    Nacos uses this to decide PUT semantics and the grouped `dom` in list answers.
    """
    return is_java_agent(user_agent(headers))


@lru_cache(maxsize=256)
def is_java_agent(agent: str) -> bool:
    """`is_java_client` for a User-Agent (or Client-Version) value."""
    prefix = "Nacos-Java-Client:v"
    if not agent.startswith(prefix):
        return False
    return version_tuple(agent[len(prefix):]) >= (1, 0, 0)


# Agents Nacos pushes to, with the least version of each (its switch defaults pushJavaVersion,
# pushPythonVersion for Nacos-DNS, pushCVersion, pushGoVersion, pushCSharpVersion).
PUSH_AGENTS = (
    ("Nacos-Java-Client", (0, 1, 0)),
    ("Nacos-DNS", (0, 4, 3)),
    ("Nacos-C-Client", (1, 0, 12)),
    ("vip-client4cpp", (1, 0, 12)),
    ("Nacos-Go-Client", (0, 1, 0)),
    ("Nacos-CSharp-Client", (0, 9, 0)),
)


@lru_cache(maxsize=256)
def is_push_client(agent: str) -> bool:
    """Whether Nacos would push to a client with this agent (`Name:v1.2.3`); Python's v1
    client (`Nacos-Python-Client`) and plain HTTP tools are not."""
    for name, least in PUSH_AGENTS:
        if agent.startswith(name):
            marker = agent.find(":v")
            return marker >= 0 and version_tuple(agent[marker + 2 :]) >= least
    return False


def version_tuple(text: str) -> tuple[int, int, int]:
    """`1.4.2-SNAPSHOT` -> (1, 4, 2); missing parts count as 0, so `1.0` equals `1.0.0`."""
    parts = [0, 0, 0]
    for index, piece in enumerate(text.split(".")[:3]):
        digits = re.match(r"\d+", piece)
        parts[index] = int(digits.group()) if digits else 0
    return parts[0], parts[1], parts[2]

