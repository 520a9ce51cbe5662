"""Loading a data file (--data-dir) validates every value as the HTTP edge does: a file whose
types are right but whose values no client could have stored (port -1, a NaN weight, namespace
`../../etc`) is refused with a message naming the first such entry, and the node does not start.
The outside probe of issue 14 found such a file loaded silently and served."""

from __future__ import annotations

import math
from pathlib import Path

import msgpack
import pytest

from nacos_actors.core.codec import encode_services
from nacos_actors.core.registry import RegistryCore
from nacos_actors.model import Instance, Service, ServiceKey, instance_map
from nacos_actors.node import run_node
from nacos_actors.snapshot import SNAPSHOT_FILE, load_snapshot
from nacos_actors.settings import Settings


def instance(ip: str = "127.0.0.1", port: int = 8080, weight: float = 1.0) -> list:
    return [ip, port, "DEFAULT", weight, True, True, True, {}, "DEFAULT", False, f"{ip}#{port}"]


def service(namespace: str, name: str, *instances: list) -> list:
    return [namespace, name, 0.0, {}, ["none", ""], False, 1, 1_000, list(instances), []]


def write(data_dir: Path, *services: list) -> Path:
    path = data_dir / SNAPSHOT_FILE
    path.write_bytes(msgpack.packb({"version": 2, "services": list(services)}))
    return path


GOOD = service("public", "DEFAULT_GROUP@@good", instance())


@pytest.mark.parametrize(
    "bad, words",
    [
        (service("public", "DEFAULT_GROUP@@minus", instance(port=-1)), "'port' must be in 1..65535, got -1"),
        (service("public", "DEFAULT_GROUP@@nan", instance(weight=math.nan)), "'weight' must be a finite number"),
        (service("../../etc", "DEFAULT_GROUP@@passwd", instance()), "'namespace' must be 1..128 characters"),
        (service("public", "DEFAULT_GROUP@@ip", instance(ip="not an ip!!")), "'ip'"),
    ],
)
def test_a_data_file_with_an_invalid_value_is_refused_naming_the_entry(tmp_path, bad, words):
    path = write(tmp_path, GOOD, bad)
    core = RegistryCore()

    with pytest.raises(SystemExit) as refused:
        load_snapshot(core, tmp_path)

    message = str(refused.value.code)
    assert message.startswith(f"cannot load {path}: service 1: ")
    assert words in message
    assert core.service_count == 0


def test_a_node_on_such_a_file_does_not_start(tmp_path, monkeypatch):
    write(tmp_path, service("public", "DEFAULT_GROUP@@minus", instance(port=-1)))

    def loaded() -> None:  # what run_node does next once the file is loaded: never get there
        raise AssertionError("the data file was loaded")

    monkeypatch.setattr("nacos_actors.node.tune_garbage_collector", loaded)
    with pytest.raises(SystemExit) as refused:
        run_node(Settings(data_dir=tmp_path))
    assert "service 0: public/DEFAULT_GROUP@@minus: instance 0: 'port' must be in 1..65535, got -1." in str(
        refused.value.code
    )


def test_a_valid_data_file_loads(tmp_path):
    key = ServiceKey("public", "DEFAULT_GROUP@@good")
    (tmp_path / SNAPSHOT_FILE).write_bytes(
        encode_services([Service(key, instance_map([Instance("127.0.0.1", 8080)]), revision=1)])
    )
    core = RegistryCore()
    load_snapshot(core, tmp_path)
    assert core.service_count == 1 and core.instance_count == 1
