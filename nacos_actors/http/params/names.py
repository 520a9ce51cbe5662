"""What a request names: its namespace, group, service (`service_key`, Nacos's `group@@name`)
and clusters. Each is checked against the length and character rules of
nacos_actors.core.values; a bad one is a ParamError naming the parameter. Pure functions (event
loop thread)."""

from __future__ import annotations

from functools import lru_cache

from nacos_actors.core import values
from nacos_actors.core.values import MAX_NAME_LENGTH, clip
from nacos_actors.http.params.base import MissingParam, ParamError, Params, at_the_edge
from nacos_actors.model import (
    DEFAULT_CLUSTER,
    DEFAULT_GROUP,
    DEFAULT_NAMESPACE,
    GROUP_SEPARATOR,
    ServiceKey,
    grouped_name,
)

parse_namespace = at_the_edge(values.check_namespace)
check_group = at_the_edge(values.check_group)
check_service_name = at_the_edge(values.check_service_name)
check_cluster = at_the_edge(values.check_cluster)


def namespace(params: Params) -> str:
    raw = params.get("namespaceId")
    return DEFAULT_NAMESPACE if raw is None else parse_namespace(raw, "namespaceId")


def group(params: Params) -> str:
    raw = params.get("groupName")
    return DEFAULT_GROUP if raw is None else check_group(raw, "groupName")


def grouped_service_name(raw: str, group_param: str | None) -> str:
    """Nacos's `group@@name` from a service name that may already carry its group."""
    if GROUP_SEPARATOR in raw:
        group_part, _, bare = raw.partition(GROUP_SEPARATOR)
        if GROUP_SEPARATOR in bare:
            raise ParamError("Param 'serviceName' is illegal, it should be format as 'groupName@@serviceName'.")
        if not group_part:
            raise ParamError("Param 'serviceName' is illegal, groupName can't be empty.")
        if not bare:
            raise ParamError("Param 'serviceName' is illegal, serviceName can't be empty.")
        check_group(group_part, "serviceName")
    else:
        group_part = DEFAULT_GROUP if group_param is None else check_group(group_param, "groupName")
        bare = raw
    try:
        values.check_service_name(bare, "serviceName")
    except values.InvalidValue:
        raise ParamError(
            f"Param 'serviceName' must be 1..{MAX_NAME_LENGTH} characters of 0-9a-zA-Z.:_- "
            f"(plus one 'group@@' prefix), got '{clip(raw)}'."
        ) from None
    return grouped_name(group_part, bare)


def service_key(params: Params) -> ServiceKey:
    """The service a request names: namespaceId + serviceName (+ groupName)."""
    return _service_key(params.get("namespaceId"), params.get("serviceName"), params.get("groupName"))


@lru_cache(maxsize=4096)
def _service_key(namespace_id: str | None, name: str | None, group_param: str | None) -> ServiceKey:
    """Validated once per distinct name (a failure raises each time and is not cached)."""
    namespace = DEFAULT_NAMESPACE if namespace_id is None else parse_namespace(namespace_id, "namespaceId")
    if name is None:
        raise MissingParam("serviceName")
    return ServiceKey(namespace, grouped_service_name(name, group_param))


def cluster(params: Params, *names: str) -> str:
    names = names or ("clusterName", "cluster")
    raw = params.first(*names)
    return DEFAULT_CLUSTER if raw is None else check_cluster(raw, names[0])


def cluster_list(params: Params, name: str = "clusters", default: str = "") -> tuple[str, tuple[str, ...]]:
    """The comma-separated clusters param `name` (`default` when absent): (the raw text, echoed
    to clients as given; the names, sorted and unique, empty = all). Every spelling of one set
    of clusters gives the same names."""
    raw = params.get(name) or default
    if not raw:
        return "", ()
    names = [part.strip() for part in raw.split(",") if part.strip()]
    for part in names:
        check_cluster(part, name)
    return raw, tuple(sorted(set(names)))
