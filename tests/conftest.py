"""Fixtures shared by every test: no actor or actor thread may outlive its test."""

from __future__ import annotations

import threading

import pykka
import pytest


@pytest.fixture(autouse=True)
def no_leaked_actors():
    """Fail a test that leaves actors running or actor threads alive."""
    before = set(threading.enumerate())
    yield
    leftover = pykka.ActorRegistry.get_all()
    pykka.ActorRegistry.stop_all(block=True, timeout=10)
    assert not leftover, f"actors still running after the test: {leftover}"
    actor_threads = [
        t
        for t in set(threading.enumerate()) - before
        if t.is_alive() and ("Actor" in t.name or t.name.endswith(("-alarm", "-receiver")))
    ]
    assert not actor_threads, f"actor threads left behind: {actor_threads}"
