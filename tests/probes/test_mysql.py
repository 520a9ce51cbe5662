"""The MYSQL checker against a private MariaDB server on 127.0.0.1 (tests/mariadb.py)."""

from __future__ import annotations

import asyncio

import pytest

from nacos_actors.core.probing import (
    MYSQL_READ_ONLY_CHECK,
    PROBE_BAD_ANSWER,
    PROBE_ERROR,
    PROBE_OK,
    PROBE_REFUSED,
    ProbeTarget,
)
from nacos_actors.model import MYSQL_CHECKER
from nacos_actors.probes.finding import Finding
from nacos_actors.probes.mysql import classify_row, probe_mysql
from tests.mariadb import MariaDB
from tests.probes.servers import closed_port, silent_listener, target

OK = Finding(PROBE_OK, False, "mysql:ok")
READ_ONLY = Finding(PROBE_BAD_ANSWER, False, "mysql:read-only")


def login(db: MariaDB, **fields: object) -> ProbeTarget:
    """A probe of `db` as its probe user (the read-only check unless `command` is given)."""
    return target(
        MYSQL_CHECKER, db.port, ip=db.host, timeout_ms=5_000, **{"user": db.user, "password": db.password, **fields}
    )


async def test_a_writable_server_is_ok(mariadb: MariaDB):
    assert await probe_mysql(login(mariadb)) == OK
    assert await probe_mysql(login(mariadb, command=MYSQL_READ_ONLY_CHECK)) == OK


async def test_a_read_only_server_is_a_counted_failure_until_writable_again(mariadb: MariaDB):
    await asyncio.to_thread(mariadb.set_read_only, True)
    assert await probe_mysql(login(mariadb)) == READ_ONLY
    # Only Nacos's own check looks at read_only: a custom command does not.
    assert await probe_mysql(login(mariadb, command="SELECT 1")) == OK
    await asyncio.to_thread(mariadb.set_read_only, False)
    assert await probe_mysql(login(mariadb)) == OK


async def test_a_custom_command_is_run(mariadb: MariaDB):
    assert await probe_mysql(login(mariadb, command="SELECT 1")) == OK
    assert await probe_mysql(login(mariadb, command="DO 1")) == OK  # no row at all


async def test_a_wrong_password_fails_at_once(mariadb: MariaDB):
    finding = await probe_mysql(login(mariadb, password="not-" + mariadb.password))
    assert finding == Finding(PROBE_BAD_ANSWER, True, "mysql:1045")
    assert mariadb.password not in finding.detail


async def test_an_unknown_user_fails_at_once(mariadb: MariaDB):
    assert await probe_mysql(login(mariadb, user="nobody")) == Finding(PROBE_BAD_ANSWER, True, "mysql:1045")
    assert (await probe_mysql(login(mariadb, user=""))).outcome == PROBE_BAD_ANSWER


async def test_bad_sql_and_a_second_statement_fail_at_once(mariadb: MariaDB):
    assert await probe_mysql(login(mariadb, command="SELEKT 1")) == Finding(PROBE_BAD_ANSWER, True, "mysql:1064")
    assert await probe_mysql(login(mariadb, command="SELECT 1; SELECT 2")) == Finding(
        PROBE_BAD_ANSWER, True, "mysql:1064"
    )


async def test_a_command_the_user_may_not_run_fails_at_once(mariadb: MariaDB):
    finding = await probe_mysql(login(mariadb, command="SELECT * FROM mysql.user"))
    assert (finding.outcome, finding.immediate) == (PROBE_BAD_ANSWER, True)


async def test_a_closed_port_is_refused():
    finding = await probe_mysql(target(MYSQL_CHECKER, closed_port(), user="probe", password="x"))
    assert finding == Finding(PROBE_REFUSED, True, "mysql:refused")


async def test_a_stopped_server_is_refused_and_ok_again_once_restarted(mariadb: MariaDB):
    await asyncio.to_thread(mariadb.stop)
    assert (await probe_mysql(login(mariadb))).outcome == PROBE_REFUSED
    await asyncio.to_thread(mariadb.start)
    assert await probe_mysql(login(mariadb)) == OK


async def test_a_server_that_never_greets_is_bounded_by_the_caller_and_the_connection_closed():
    async with silent_listener() as listener:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await probe_mysql(target(MYSQL_CHECKER, listener.port, user="probe", password="x"))
        async with asyncio.timeout(2):
            while listener.closed_by_peer < 1:
                await asyncio.sleep(0.005)
        assert listener.received == b""  # the password never left


@pytest.mark.parametrize("ip", ["localhost", "db.example", "fe80::1%lo"])
async def test_a_name_is_never_asked_for(ip: str):
    finding = await probe_mysql(target(MYSQL_CHECKER, 3306, ip=ip, user="probe", password="x"))
    assert finding == Finding(PROBE_ERROR, False, "mysql:not an IP literal and port")


def test_classify_row():
    assert classify_row(MYSQL_READ_ONLY_CHECK, ("read_only", "ON")) == READ_ONLY
    assert classify_row(MYSQL_READ_ONLY_CHECK, (b"read_only", b"ON")) == READ_ONLY
    assert classify_row(MYSQL_READ_ONLY_CHECK, ("read_only", "OFF")) == OK
    assert classify_row(MYSQL_READ_ONLY_CHECK, None) == OK
    assert classify_row("SELECT 'x', 'ON'", ("x", "ON")) == OK
