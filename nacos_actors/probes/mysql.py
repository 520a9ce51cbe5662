"""The MYSQL checker: log in to the instance's own IP and port and run the checker's command
(Nacos 1.4's MysqlHealthCheckProcessor), on a fresh connection per probe (Nacos keeps one per
instance). Event loop thread only."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Final

import aiomysql
import pymysql
from pymysql.constants import CLIENT

from nacos_actors.core.probing import (
    MYSQL_READ_ONLY_CHECK,
    PROBE_BAD_ANSWER,
    PROBE_ERROR,
    PROBE_OK,
    PROBE_REFUSED,
    PROBE_TIMEOUT,
    ProbeTarget,
)
from nacos_actors.probes.finding import Finding, not_probed, probe_address

READ_ONLY: Final = "ON"
"""The second column of MYSQL_READ_ONLY_CHECK's row on a read-only server (Nacos: a slave)."""


def classify_row(command: str, row: Any) -> Finding:
    """OK, unless `command` is Nacos's read-only check and the server says read-only: a counted
    failure (`mysql:read-only`)."""
    if command == MYSQL_READ_ONLY_CHECK and row is not None and len(row) >= 2:
        value = row[1].decode() if isinstance(row[1], bytes) else str(row[1])
        if value == READ_ONLY:
            return Finding(PROBE_BAD_ANSWER, False, "mysql:read-only")
    return Finding(PROBE_OK, False, "mysql:ok")


def classify_error(error: pymysql.MySQLError) -> Finding:
    """A failed login or command. No connection: refused or reset is REFUSED (immediate), the
    connect timeout is TIMEOUT, another socket error ERROR; the server's own error (a bad
    password, bad SQL, too many connections) is BAD_ANSWER, immediate (Nacos's SQLException)."""
    cause = error.__cause__
    if isinstance(cause, ConnectionRefusedError | ConnectionResetError):
        return Finding(PROBE_REFUSED, True, "mysql:refused")
    if isinstance(cause, TimeoutError):
        return Finding(PROBE_TIMEOUT, False, "mysql:timeout")
    if isinstance(cause, OSError):
        return Finding(PROBE_ERROR, False, f"mysql:{type(cause).__name__}")
    code = error.args[0] if error.args and isinstance(error.args[0], int) else type(error).__name__
    return Finding(PROBE_BAD_ANSWER, True, f"mysql:{code}")


async def probe_mysql(target: ProbeTarget) -> Finding:
    """Log in as `target.user` to `target.ip`:`target.port` (TCP only: no socket file, no option
    file, no resolver, one statement per command, no LOCAL INFILE), run `target.command`
    (MYSQL_READ_ONLY_CHECK when empty), read one row and close (classify_row, classify_error).
    The caller bounds the time; a cancelled probe closes its connection."""
    address = probe_address(target)
    if address is None:
        return not_probed("mysql")
    command = target.command or MYSQL_READ_ONLY_CHECK
    connection = aiomysql.Connection(
        host=str(address),
        port=target.port,
        user=target.user,
        password=target.password,
        unix_socket=None,
        read_default_file=None,
        connect_timeout=target.timeout_ms / 1000,
        local_infile=False,
        autocommit=None,  # the server's default: no extra round trip
        loop=asyncio.get_running_loop(),
    )
    # aiomysql would log in as this host's OS user when none is given, and lets one command
    # hold several statements; Nacos's JDBC connection does neither.
    connection._user = target.user
    connection.client_flag &= ~CLIENT.MULTI_STATEMENTS
    try:
        # aiomysql.connect() is this; calling it ourselves keeps the connection to close when
        # the probe is cancelled half-way through the login.
        await connection._connect()
        async with connection.cursor() as cursor:
            await cursor.execute(command)
            row = await cursor.fetchone()
        with contextlib.suppress(Exception):  # the answer is in: a failed goodbye changes nothing
            await connection.ensure_closed()
    except pymysql.MySQLError as error:
        return classify_error(error)
    finally:
        connection.close()
    return classify_row(command, row)
