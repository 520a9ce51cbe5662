"""Prometheus HTTP service discovery (Nacos 2.2+: GET /nacos/prometheus): every instance as a
target group, its labels from its cluster and metadata. Rendered service by service as the
answer is written (`prometheus_target_parts`), so no request holds the whole registry's answer;
nothing is memoized (a discovery poll comes every 30 s or so). Pure: any thread."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from nacos_actors.model import Instance, Service, in_order

CLUSTER_LABEL = "__meta_clusterName"
_NOT_IN_LABEL_NAME = re.compile(r"[^A-Za-z0-9_]")


def label_name(key: str) -> str:
    """A metadata key as a valid Prometheus label name.

    Nacos (2.4) replaces `.` and `-` by `_`; any other character outside [A-Za-z0-9_] is made
    `_` here too, and a leading digit (or an empty key) gets a `_` prefix, because one invalid
    label name makes Prometheus refuse the whole discovery answer.
    """
    name = _NOT_IN_LABEL_NAME.sub("_", key)
    return name if name and not name[0].isdigit() else "_" + name


def prometheus_target(instance: Instance) -> dict[str, Any]:
    """One HTTP SD target group: the instance's `ip:port` and its labels (Nacos's shape).

    Labels: `__meta_clusterName`, then each metadata key as a label name (label_name); when two
    keys map to the same name, or a key to `__meta_clusterName`, the first one stays.
    """
    labels = {CLUSTER_LABEL: instance.cluster}
    for key, value in instance.metadata.items():
        labels.setdefault(label_name(key), value)
    address = f"[{instance.ip}]:{instance.port}" if ":" in instance.ip else f"{instance.ip}:{instance.port}"
    return {"targets": [address], "labels": labels}


def prometheus_targets(service: Service) -> bytes:
    """The service's instances as comma-separated SD target-group JSON (b"" when none).

    Every instance is a target, healthy or not, enabled or not, ephemeral or persistent (as
    Nacos).
    """
    return b",".join(orjson.dumps(prometheus_target(instance)) for instance in in_order(service.instances.values()))


def prometheus_target_parts(services: Iterable[Service]) -> Iterator[bytes]:
    """The JSON array of the target groups of every instance of `services`, in their order, one
    service's part at a time (rendered as it is asked for)."""
    yield b"["
    separator = b""
    for service in services:
        part = prometheus_targets(service)
        if part:
            yield separator
            yield part
            separator = b","
    yield b"]"


def prometheus_target_list(services: Iterable[Service]) -> bytes:
    """The whole JSON array of `prometheus_target_parts` at once."""
    return b"".join(prometheus_target_parts(services))
