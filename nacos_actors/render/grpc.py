"""The `serviceInfo` of the Nacos 2.x gRPC protocol: what QueryServiceResponse,
SubscribeServiceResponse and NotifySubscriberRequest carry, as the Java server serialises it
(no nulls; `clusters` always a string, which the Rust client requires).

`lastRefTime` is the service's own stamp (`Service.last_ref_ms`, strictly increasing with each
change of either half), so an answer and a push of the same state carry the same stamp and a
newer state a greater one: the Python client drops a serviceInfo whose stamp is not greater
than the one it holds. A missing service answers `now_ms`.

Any thread, each with its own RenderedInstances.
"""

from __future__ import annotations

from typing import Any

from nacos_actors.model import DEFAULT_GROUP, Service, ServiceKey, split_grouped_name
from nacos_actors.render.lists import DEFAULT_CACHE_MILLIS, RenderedInstances, select_hosts


def service_info(
    service: Service | None,
    key: ServiceKey,
    clusters_text: str,
    clusters: tuple[str, ...],
    healthy_only: bool,
    now_ms: int,
    rendered: RenderedInstances,
    cache_millis: int = DEFAULT_CACHE_MILLIS,
) -> dict[str, Any]:
    """The serviceInfo document of `key` as selected for `clusters` (sorted, unique; empty: all)
    with Nacos's protect threshold and `healthy_only`. Hosts carry the grouped service name, as
    2.x servers send it."""
    group, bare = split_grouped_name(key.name)
    document: dict[str, Any] = {
        "name": bare,
        "groupName": group or DEFAULT_GROUP,
        "clusters": clusters_text,
        "cacheMillis": cache_millis,
        "hosts": [],
        "lastRefTime": now_ms,
        "checksum": "",
        "allIps": False,
        "reachProtectionThreshold": False,
        "valid": True,
    }
    if service is None:
        return document
    selected, protected = select_hosts(service, clusters, healthy_only)
    document["hosts"] = [rendered.host(instance, healthy, key.name) for instance, healthy in selected]
    document["lastRefTime"] = service.last_ref_ms
    document["reachProtectionThreshold"] = protected
    return document
