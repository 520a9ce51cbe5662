"""A private MariaDB server for the MYSQL health probe tests: its own data directory, socket and
port on 127.0.0.1, real password logins. Debian's mariadb-server provides the binaries
(scripts/test installs it when missing); without them the tests that need it skip, loudly, and
fail under CI (env CI), which must run them.

The helpers are synchronous (pymysql over the server's socket, subprocess): call them from a
fixture or a plain test, or with `asyncio.to_thread` from a test on the loop."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pymysql
import pytest

HOST = "127.0.0.1"
PROBE_USER = "probe"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
SBIN = ("/usr/sbin", "/usr/local/sbin", "/usr/bin")


def find_program(*names: str) -> str | None:
    """The first of `names` on PATH or in the sbin directories (not always on a user's PATH)."""
    for name in names:
        found = shutil.which(name) or next(
            (str(Path(d) / name) for d in SBIN if os.access(Path(d) / name, os.X_OK)), None
        )
        if found:
            return found
    return None


def require_programs() -> tuple[str, str]:
    """(server, install-db) programs; skips loudly when missing (fails under CI)."""
    server = find_program("mariadbd", "mysqld")
    install_db = find_program("mariadb-install-db", "mysql_install_db")
    if server and install_db:
        return server, install_db
    reason = (
        "mariadbd / mariadb-install-db are missing: the MySQL probe tests need Debian's "
        "mariadb-server (scripts/test installs it when run as root)"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip("SKIPPED LOUDLY: " + reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class MariaDB:
    """One private server. `host`, `port`, `user` and `password` are what a probe logs in
    with ('probe'@'%', no privileges beyond USAGE). `stop()` and `start()` stop and restart it
    on the same port and data; `set_read_only` flips the global read_only; `close()` ends it."""

    def __init__(self, server: str, install_db: str, root: Path) -> None:
        self.host = HOST
        self.port = free_port()
        self.user = PROBE_USER
        self.password = "pw-" + secrets.token_hex(8)
        self._server = server
        self._root = root
        self._datadir = root / "data"
        self._socket = root / "s.sock"
        self._error_log = root / "error.log"
        self._process: subprocess.Popen[bytes] | None = None
        subprocess.run(
            [
                install_db,
                "--no-defaults",
                f"--datadir={self._datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
                f"--user={pwd.getpwuid(os.geteuid()).pw_name}",
            ],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT_S,
        )
        self.start()
        try:
            with self.admin() as cursor:
                for host in ("%%", "127.0.0.1", "::1", "localhost"):  # %% is a literal % here
                    cursor.execute(f"CREATE USER '{PROBE_USER}'@'{host}' IDENTIFIED BY %s", (self.password,))
        except BaseException:
            self.stop()
            raise

    def start(self) -> None:
        """Start the server and wait (bounded) until it takes logins."""
        assert self._process is None, "already running"
        command = [
            self._server,
            "--no-defaults",
            f"--datadir={self._datadir}",
            f"--socket={self._socket}",
            f"--port={self.port}",
            f"--bind-address={HOST}",
            f"--pid-file={self._root / 'mariadbd.pid'}",
            f"--log-error={self._error_log}",
            f"--tmpdir={self._root}",
            "--skip-name-resolve",  # the server never asks a resolver about a client
            "--innodb-buffer-pool-size=16M",
            "--skip-log-bin",
        ]
        if os.geteuid() == 0:
            command.append("--user=root")  # mariadbd refuses to run as root otherwise
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._socket_answers():
            if self._process.poll() is not None:
                self._process = None
                raise RuntimeError(f"mariadbd exited at start:\n{self.error_log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mariadbd did not listen in {START_TIMEOUT_S} s:\n{self.error_log_tail()}")
            time.sleep(0.02)

    def _socket_answers(self) -> bool:
        # A bare connect to the socket file (pymysql leaks its socket when that fails).
        if not self._socket.exists():
            return False
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(self._socket))
            except OSError:
                return False
        return True

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a bounded wait)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)

    close = stop

    @property
    def running(self) -> bool:
        """Whether the server was started and not stopped."""
        return self._process is not None

    def reset(self) -> None:
        """Running and writable again (what each test starts from)."""
        if not self.running:
            self.start()
        self.set_read_only(False)

    def admin(self) -> _AdminCursor:
        """A cursor of root over the socket (autocommit), as a context manager."""
        return _AdminCursor(self._socket)

    def set_read_only(self, read_only: bool) -> None:
        """SET GLOBAL read_only: the read-only check then finds `ON` (a replica, for Nacos)."""
        with self.admin() as cursor:
            cursor.execute(f"SET GLOBAL read_only = {1 if read_only else 0}")

    def error_log_tail(self, lines: int = 30) -> str:
        """The end of the server's error log (for a failure message)."""
        try:
            return "\n".join(self._error_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no error log)"


class _AdminCursor:
    def __init__(self, socket_path: Path) -> None:
        self._socket_path = socket_path
        self._connection: pymysql.Connection | None = None  # type: ignore[type-arg]

    def __enter__(self) -> pymysql.cursors.Cursor:
        self._connection = pymysql.connect(
            unix_socket=str(self._socket_path), user="root", password="", autocommit=True, connect_timeout=5
        )
        return self._connection.cursor()

    def __exit__(self, *exc: object) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def start_mariadb(root: Path) -> MariaDB:
    """A new private server under `root` (skips loudly, or fails under CI, without MariaDB)."""
    server, install_db = require_programs()
    return MariaDB(server, install_db, root)
