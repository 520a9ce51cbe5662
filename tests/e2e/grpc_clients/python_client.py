"""nacos-sdk-python 3.2.0's `NacosNamingService` (gRPC), unmodified, driven by JSON lines (lines.py).

Run by tests/e2e/grpc_support.py as `.venv-grpc-clients/bin/python python_client.py '<config>'`;
config: server ("127.0.0.1:8848"), grpcPort (the node's gRPC port; the client adds it to the HTTP
port as an offset), namespace, dir (for the client's log and cache), app. Commands: register,
register_persistent, batch_register, batch_deregister, deregister, update, list, get_service,
list_services, subscribe, unsubscribe, health, close. The client is told to take empty pushes
(set_update_cache_when_empty) so that the last instance leaving is seen.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from typing import Any

from lines import answer, config, emit
from v2.nacos import (
    BatchRegisterInstanceParam,
    ClientConfigBuilder,
    DeregisterInstanceParam,
    GetServiceParam,
    GRPCConfig,
    Instance,
    ListInstanceParam,
    ListServiceParam,
    NacosNamingService,
    RegisterInstanceParam,
    SubscribeServiceParam,
)


def plain(instance: Instance) -> dict[str, Any]:
    return instance.model_dump()


def register_param(command: dict[str, Any], ephemeral: bool = True) -> RegisterInstanceParam:
    return RegisterInstanceParam(
        service_name=command["service"],
        group_name=command.get("group", "DEFAULT_GROUP"),
        ip=command["ip"],
        port=command["port"],
        weight=command.get("weight", 1.0),
        enabled=command.get("enabled", True),
        healthy=command.get("healthy", True),
        metadata=command.get("metadata", {}),
        cluster_name=command.get("cluster", ""),
        ephemeral=ephemeral,
    )


class PythonDriver:
    """One NacosNamingService and the subscriptions this driver made on it (event loop thread)."""

    def __init__(self, naming: NacosNamingService) -> None:
        self.naming = naming
        self.callbacks: dict[tuple[str, str], Any] = {}

    async def run(self, command: dict[str, Any]) -> Any:
        op = command["op"]
        naming = self.naming
        service, group = command.get("service", ""), command.get("group", "DEFAULT_GROUP")
        if op == "register":
            return await naming.register_instance(register_param(command))
        if op == "update":
            return await naming.update_instance(register_param(command))
        if op == "register_persistent":
            return await naming.register_instance(register_param(command, ephemeral=False))
        if op in ("batch_register", "batch_deregister"):
            param = BatchRegisterInstanceParam(
                service_name=service,
                group_name=group,
                instances=[register_param({"service": service, "group": group, **one}) for one in command["instances"]],
            )
            if op == "batch_register":
                return await naming.batch_register_instances(param)
            return await naming.batch_deregister_instances(param)
        if op == "deregister":
            return await naming.deregister_instance(
                DeregisterInstanceParam(
                    service_name=service,
                    group_name=group,
                    ip=command["ip"],
                    port=command["port"],
                    cluster_name=command.get("cluster", ""),
                    ephemeral=command.get("ephemeral", True),
                )
            )
        if op == "list":
            found = await naming.list_instances(
                ListInstanceParam(
                    service_name=service,
                    group_name=group,
                    clusters=command.get("clusters", []),
                    subscribe=command.get("subscribe", True),
                    healthy_only=command.get("healthy_only"),
                )
            )
            return [plain(i) for i in found]
        if op == "get_service":
            got = await naming.get_service(
                GetServiceParam(service_name=service, group_name=group, clusters=command.get("clusters", []))
            )
            return {**got.model_dump(exclude={"hosts"}), "hosts": [plain(i) for i in got.hosts]}
        if op == "list_services":
            page = await naming.list_services(
                ListServiceParam(
                    group_name=group, page_no=command.get("page_no", 1), page_size=command.get("page_size", 10)
                )
            )
            return {"count": page.count, "services": page.services}
        if op == "subscribe":
            return await self.subscribe(service, group)
        if op == "unsubscribe":
            callback = self.callbacks.pop((service, group))
            await naming.unsubscribe(
                SubscribeServiceParam(service_name=service, group_name=group, subscribe_callback=callback)
            )
            return True
        if op == "health":
            return await naming.server_health()
        if op == "close":
            await naming.shutdown()
            return True
        raise ValueError(f"unknown op {op!r}")

    async def subscribe(self, service: str, group: str) -> bool:
        async def on_change(instances: list[Instance]) -> None:
            emit({"event": "notify", "service": service, "group": group, "instances": [plain(i) for i in instances]})

        self.callbacks[(service, group)] = on_change
        await self.naming.subscribe(
            SubscribeServiceParam(service_name=service, group_name=group, subscribe_callback=on_change)
        )
        return True


def read_commands(loop: asyncio.AbstractEventLoop, commands: asyncio.Queue[dict[str, Any] | None]) -> None:
    """stdin -> the queue (a thread: the loop never blocks on stdin); None at end of input."""
    import json

    for line in sys.stdin:
        if line.strip():
            loop.call_soon_threadsafe(commands.put_nowait, json.loads(line))
    loop.call_soon_threadsafe(commands.put_nowait, None)


async def main() -> None:
    settings = config()
    _, _, port = settings["server"].rpartition(":")
    offset = int(settings.get("grpcPort") or int(port) + 1000) - int(port)
    work = settings["dir"]
    client_config = (
        ClientConfigBuilder()
        .server_address(settings["server"])
        .namespace_id(settings.get("namespace", ""))
        .log_dir(os.path.join(work, "logs"))
        .cache_dir(os.path.join(work, "cache"))
        .log_level(logging.INFO)
        .load_cache_at_start(False)
        .grpc_config(GRPCConfig(grpc_timeout=settings.get("timeoutMs", 3000), port_offset=offset))
        .build()
    )
    client_config.set_update_cache_when_empty(True)
    if settings.get("app"):
        client_config.app_name = settings["app"]
    try:
        naming = await NacosNamingService.create_naming_service(client_config)
    except Exception as error:
        emit({"event": "fatal", "error": f"{type(error).__name__}: {error}"})
        return
    emit({"event": "ready", "healthy": await naming.server_health()})
    driver = PythonDriver(naming)
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    threading.Thread(target=read_commands, args=(loop, commands), daemon=True).start()
    while (command := await commands.get()) is not None:
        try:
            answer(command, await driver.run(command))
        except Exception as error:
            answer(command, error=error)
    emit({"event": "closed"})


if __name__ == "__main__":
    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)  # the client's background tasks and threads must not keep the process alive
