"""Fixtures shared by every test: no actor or actor thread may outlive its test."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pykka
import pytest

from tests.mariadb import MariaDB, start_mariadb


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


@pytest.fixture(scope="session")
def mariadb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """One private MariaDB server for the session (tests/mariadb.py); skips loudly without
    MariaDB, fails under CI."""
    server = start_mariadb(tmp_path_factory.mktemp("mariadb"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def mariadb(mariadb_server: MariaDB) -> MariaDB:
    """The session's MariaDB server, running and writable (a test may stop it or make it
    read-only: the next one gets it back)."""
    mariadb_server.reset()
    return mariadb_server
