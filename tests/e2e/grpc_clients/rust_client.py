"""nacos-sdk-rust-binding-py 0.8.0's `NacosNamingClient` (gRPC, the Rust crate nacos-sdk 0.8.0),
unmodified, driven by JSON lines (lines.py).

Run by tests/e2e/grpc_support.py as `.venv-grpc-clients/bin/python rust_client.py '<config>'`;
config: server ("127.0.0.1:8848"; the crate always dials the HTTP port + 1000 for gRPC), namespace,
app. Commands: register, register_persistent, batch_register, deregister, update, list,
subscribe, close. The crate has no unsubscribe, get_service, list_services, batch deregister or
shutdown: `close` answers and then ends the driver process, whose exit closes the connection
(dropping the client object does not: its runtime keeps the connection up).
Pushes of an empty list reach the listener (naming_push_empty_protection off).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from lines import answer, config, emit

# The binding's blocking calls keep the GIL while they wait, and listeners run on the crate's
# runtime threads and need the GIL: with the crate's default of one runtime thread, a push that
# arrives during a call waits for the GIL on the only thread that could finish the call, and both
# hang. More runtime threads let the call finish (NACOS_CLIENT_COMMON_THREAD_CORES, the crate's own
# setting).
os.environ.setdefault("NACOS_CLIENT_COMMON_THREAD_CORES", "4")

from nacos_sdk_rust_binding_py import ClientOptions, NacosNamingClient, NacosServiceInstance


def plain(instance: NacosServiceInstance) -> dict[str, Any]:
    return {
        "instanceId": instance.instance_id,
        "ip": instance.ip,
        "port": instance.port,
        "weight": instance.weight,
        "healthy": instance.healthy,
        "enabled": instance.enabled,
        "ephemeral": instance.ephemeral,
        "clusterName": instance.cluster_name,
        "serviceName": instance.service_name,
        "metadata": dict(instance.metadata or {}),
    }


def made(command: dict[str, Any], ephemeral: bool = True) -> NacosServiceInstance:
    return NacosServiceInstance(
        ip=command["ip"],
        port=command["port"],
        weight=command.get("weight", 1.0),
        healthy=command.get("healthy", True),
        enabled=command.get("enabled", True),
        ephemeral=ephemeral,
        cluster_name=command.get("cluster") or None,
        metadata=command.get("metadata", {}),
    )


class RustDriver:
    """One NacosNamingClient (main thread); listeners run on the crate's threads and only emit."""

    def __init__(self, client: NacosNamingClient) -> None:
        self.client: NacosNamingClient | None = client
        self.listeners: list[Any] = []  # kept alive as long as the client

    def run(self, command: dict[str, Any]) -> Any:
        op = command["op"]
        client = self.client
        if client is None:
            raise RuntimeError("closed")
        service, group = command.get("service", ""), command.get("group", "DEFAULT_GROUP")
        if op in ("register", "update"):
            client.register_instance(service, group, made(command))
            return True
        if op == "register_persistent":
            client.register_instance(service, group, made(command, ephemeral=False))
            return True
        if op == "batch_register":
            client.batch_register_instance(
                service, group, [made({"service": service, **one}) for one in command["instances"]]
            )
            return True
        if op == "deregister":
            client.deregister_instance(service, group, made(command, ephemeral=command.get("ephemeral", True)))
            return True
        if op == "list":
            clusters = command.get("clusters") or None
            subscribe = command.get("subscribe", True)
            if command.get("healthy_only") is None:
                found = client.get_all_instances(service, group, clusters, subscribe)
            else:
                found = client.select_instances(service, group, clusters, subscribe, command["healthy_only"])
            return [plain(i) for i in found]
        if op == "subscribe":

            def on_change(instances: list[NacosServiceInstance]) -> None:
                emit(
                    {"event": "notify", "service": service, "group": group, "instances": [plain(i) for i in instances]}
                )

            self.listeners.append(on_change)
            client.subscribe(service, group, command.get("clusters") or None, on_change)
            return True
        if op == "close":
            answer(command, True)
            sys.stdout.flush()
            os._exit(0)
        raise ValueError(f"unknown op {op!r} (nacos-sdk-rust-binding-py has no such call)")


def main() -> None:
    settings = config()
    options = ClientOptions(
        settings["server"],
        settings.get("namespace", ""),
        app_name=settings.get("app") or None,
        naming_push_empty_protection=False,
        naming_load_cache_at_start=False,
    )
    try:
        client = NacosNamingClient(options)
    except Exception as error:
        emit({"event": "fatal", "error": f"{type(error).__name__}: {error}"})
        return
    emit({"event": "ready"})
    driver = RustDriver(client)
    del client
    for line in sys.stdin:
        if not line.strip():
            continue
        command = json.loads(line)
        try:
            answer(command, driver.run(command))
        except Exception as error:
            answer(command, error=error)
    emit({"event": "closed"})


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)  # the crate's runtime threads must not keep the process alive
