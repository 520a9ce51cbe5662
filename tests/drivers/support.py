"""Helpers shared by the actor tests."""

from __future__ import annotations

import threading
import time
from typing import Callable


class RecordingReply:
    """A Reply for tests: remembers the outcome and signals when it arrives."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value = None
        self.error = None

    def resolve(self, value):
        self.value = value
        self.done.set()

    def fail(self, error):
        self.error = error
        self.done.set()


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `condition` every 5 ms until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False
