"""The npm nacos client driver (node/driver.js) as a Python object, for the end-to-end tests."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
DRIVER = NODE_DIR / "driver.js"
RUN_TIMEOUT_S = 30.0
EVENT_TIMEOUT_S = 10.0
# Polling every cacheMillis (3 s) should show a change within ~3-4 s; allow for a loaded machine.
IP1, IP2, IP3, IP4, IP5 = (f"127.0.0.{n}" for n in range(1, 6))


def find_node_bin() -> str:
    """The `node` executable, once the pinned client is installed; skips without Node.js."""
    node = shutil.which("node")
    modules = NODE_DIR / "node_modules" / "nacos" / "package.json"
    if node is None:
        pytest.skip("node is not on PATH: the npm nacos client tests need Node.js")
    if not modules.exists():
        if shutil.which("npm") is None:
            pytest.skip("npm is not on PATH, so the npm nacos client (tests/e2e/node) is not installed")
        pytest.fail(f"{modules.parent} is missing: run scripts/test (or npm ci --prefix {NODE_DIR})")
    pinned = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["nacos"]
    installed = json.loads(modules.read_text())["version"]
    if installed != pinned:
        pytest.fail(f"node_modules holds nacos {installed}, package.json pins {pinned}: run scripts/test")
    return node


def driver_environment() -> dict[str, str]:
    """No Alibaba Cloud credential settings: they would make the client sign or fetch credentials."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "NODE_OPTIONS"))}


class Driver:
    """A running driver.js: its JSON events arrive on a queue, steps go to its stdin."""

    def __init__(self, node_bin: str, scenario: dict[str, Any], stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")
        self.process = subprocess.Popen(
            [node_bin, str(DRIVER), json.dumps(scenario)],
            cwd=NODE_DIR,
            env=driver_environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self.events: list[dict[str, Any]] = []  # every event taken off the queue, in order
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self._queue.put(json.loads(line))
            except ValueError:
                self._queue.put({"event": "garbage", "line": line.decode(errors="replace")})
        self._queue.put(None)

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def send(self, **step: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(step) + "\n").encode())
        self.process.stdin.flush()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        """The next event matching `predicate` (every event before it is kept in `events`)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                event = self._queue.get(timeout=max(left, 0.0))
            except queue.Empty:
                pytest.fail(f"driver: no {what} within {timeout} s; events so far {self.events}\n{self.stderr()}")
            if event is None:
                self._queue.put(None)
                pytest.fail(f"driver exited before {what}: {self.process.wait()}\n{self.events}\n{self.stderr()}")
            self.events.append(event)
            if event["event"] == "fatal":
                pytest.fail(f"driver failed: {event['message']}\n{self.stderr()}")
            if predicate(event):
                return event

    def step(self, timeout: float = EVENT_TIMEOUT_S, **step: Any) -> dict[str, Any]:
        """Send one step and return its result event (which must be ok unless `mayFail`)."""
        self.send(**step)
        result = self.wait_for(lambda e: e["event"] == "result", timeout, f"result of {step['op']}")
        assert result["op"] == step["op"]
        assert result["ok"] or step.get("mayFail"), result
        return result

    def finish(self, timeout: float = EVENT_TIMEOUT_S) -> list[dict[str, Any]]:
        """Close stdin (end of steps) and collect the rest; the driver must exit 0 by itself."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.wait_for(lambda e: e["event"] == "closed", timeout, "closed")
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"driver still running {timeout} s after closing\n{self.stderr()}")
        self._reader.join(timeout)
        while (event := self._queue.get_nowait()) is not None:
            self.events.append(event)
        assert code == 0, f"driver exited with {code}: {self.events}\n{self.stderr()}"
        return self.events

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def close_files(self) -> None:
        self._stderr.close()
