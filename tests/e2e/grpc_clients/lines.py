"""The JSON-lines protocol both client drivers speak (runs inside .venv-grpc-clients, stdlib only).

stdin: one command a line, `{"id": N, "op": "<name>", ...arguments}`.
stdout: one line per answer, `{"id": N, "op": ..., "ok": true, "result": ...}` or
`{"id": N, "op": ..., "ok": false, "error": "<type>: <message>"}`, and events the client fires on its
own, `{"event": "ready"}` once connected, `{"event": "notify", "service": ..., "group": ...,
"instances": [...]}` for each subscription callback, `{"event": "fatal", "error": ...}` when the
client could not even start. Instances are plain dicts with Nacos's field names.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

_write_lock = threading.Lock()


def emit(message: dict[str, Any]) -> None:
    """Write one line to stdout (any thread: callbacks arrive on the clients' own threads)."""
    line = json.dumps(message, default=str)
    with _write_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def answer(command: dict[str, Any], result: Any = None, error: BaseException | None = None) -> None:
    """The answer line to `command`: ok with `result`, or not ok naming the error."""
    reply: dict[str, Any] = {"id": command.get("id"), "op": command.get("op")}
    if error is None:
        reply.update(ok=True, result=result)
    else:
        reply.update(ok=False, error=f"{type(error).__name__}: {error}")
    emit(reply)


def instance_fields(ip: str, port: int, **rest: Any) -> dict[str, Any]:
    """An instance as the tests compare it, whatever client read it."""
    return {"ip": ip, "port": port, **rest}


def config() -> dict[str, Any]:
    """The driver's start-up settings: argv[1], a JSON object (server, grpcPort, namespace, ...)."""
    return json.loads(sys.argv[1])
