"""The health checker's value rules (nacos_actors.core.values): an HTTP checker's path can only
ever name the instance's own address, its headers are exactly the `name:value` pairs it shows,
a MYSQL command is bounded. Pure."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest
import yarl
from hypothesis import given, settings
from hypothesis import strategies as st

from nacos_actors.core.values import (
    MAX_CHECKER_COMMAND_LENGTH,
    MAX_CHECKER_HEADERS_LENGTH,
    MAX_CHECKER_PATH_LENGTH,
    InvalidValue,
    check_checker_path,
    checker_headers,
    parse_health_checker,
)

FIELD = "healthChecker"
BASE = "http://127.0.0.1:8080"


def refusal(document) -> InvalidValue:
    with pytest.raises(InvalidValue) as caught:
        parse_health_checker(document, FIELD)
    return caught.value


# -- path -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["", "/", "/health", "/actuator/health?full=true", "/a?next=http://x/y", "/a:b@c", "/%2F%2Fx", "/ünï", "/..//x"],
)
def test_paths_that_stay_on_the_instance_are_kept_as_given(path):
    checker = parse_health_checker({"type": "HTTP", "path": path}, FIELD)
    assert checker["path"] == path


@pytest.mark.parametrize(("path", "stored"), [("health", "/health"), ("?x=1", "/?x=1"), ("a/b?c=d", "/a/b?c=d")])
def test_a_relative_path_is_read_from_the_root_as_nacos_resolves_it(path, stored):
    assert parse_health_checker({"type": "HTTP", "path": path}, FIELD)["path"] == stored


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("http://other-host/x", "must not contain '://'"),
        ("https://other-host", "must not contain '://'"),
        ("//other-host/x", "must not start with '//'"),
        ("///x", "must not start with '//'"),
        ("/x://other-host", "must not contain '://'"),
        ("/\\other-host/x", "must not contain '\\'"),
        ("/\\\\other-host", "must not contain '\\'"),
        ("/health#top", "must not contain '#'"),
        ("/a b", "must not contain whitespace"),
        ("/a\u00a0b", "must not contain whitespace"),
        ("/a\u2028b", "must not contain whitespace"),
        ("/a\tb", "must not contain control characters"),
        ("/health\r\nX-Injected: 1", "must not contain control characters"),
        ("/a\x00", "must not contain control characters"),
        ("/a\udcff", "is not valid UTF-8"),
        ("/" + "a" * MAX_CHECKER_PATH_LENGTH, f"at most {MAX_CHECKER_PATH_LENGTH} characters"),
    ],
)
def test_paths_that_could_leave_the_instance_or_break_the_request_are_refused(path, problem):
    error = refusal({"type": "HTTP", "path": path})
    assert error.field == "healthChecker.path"
    assert problem in error.problem, error.problem


def test_the_longest_path_is_accepted():
    path = "/" + "a" * (MAX_CHECKER_PATH_LENGTH - 1)
    assert check_checker_path(path, "p") == path


def _hosts_of(path: str) -> set[tuple[str | None, int | None]]:
    """Where the probe of `path` would go, as three URL libraries resolve it against the
    instance's address."""
    joined = urlsplit(urljoin(BASE, path))
    by_join = yarl.URL(BASE).join(yarl.URL(path))
    by_concatenation = yarl.URL(BASE + path)
    return {
        (joined.hostname, joined.port),
        (by_join.host, by_join.port),
        (by_concatenation.host, by_concatenation.port),
    }


URL_PIECES = st.sampled_from([*"/\\:?#@.%[]aZ9-_~ \t\u00e9", "//", "://", "http", "..", "%2F"])
URLISH = st.lists(URL_PIECES, max_size=12).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(URLISH, st.text(), st.from_regex(r"\A/[/:@?#\\a-z.]*\Z")))
def test_any_accepted_path_keeps_the_host(path):
    try:
        accepted = check_checker_path(path, "healthChecker.path")
    except InvalidValue as error:
        assert error.field == "healthChecker.path"
        return
    assert accepted in (path, "/" + path)
    if accepted:
        assert _hosts_of(accepted) == {("127.0.0.1", 8080)}, accepted


# -- headers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "headers"),
    [
        ("", ()),
        ("a:b", (("a", "b"),)),
        (" X-Trace : 1 | Accept:application/json ", (("X-Trace", "1"), ("Accept", "application/json"))),
        ("Referer:http://127.0.0.1/x", (("Referer", "http://127.0.0.1/x"),)),
        ("X-Empty:", (("X-Empty", ""),)),
        ("a:b||c:d|", (("a", "b"), ("c", "d"))),
        ("a:1|a:2", (("a", "1"), ("a", "2"))),
        ("!#$%&'*+.^_`~:v", (("!#$%&'*+.^_`~", "v"),)),
        ("X-Name:caf\u00e9", (("X-Name", "caf\u00e9"),)),
    ],
)
def test_headers_are_the_name_value_pairs_the_text_shows(text, headers):
    assert checker_headers(text, "h") == headers
    assert parse_health_checker({"type": "HTTP", "headers": text}, FIELD)["headers"] == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("novalue", "'name:value' entries"),
        (":v", "'name:value' entries"),
        ("a b:c", "'name:value' entries"),
        ("a(b):c", "'name:value' entries"),
        ("a:b|c", "'name:value' entries"),
        ("\u00e9:v", "'name:value' entries"),
        ("a:b\r\nX-Injected: 1", "control characters"),
        ("a:b\nc:d", "control characters"),
        ("a:\x7f", "control characters"),
        ("a:\tb", "control characters"),
        ("a:\udcff", "not valid UTF-8"),
        ("a:" + "b" * MAX_CHECKER_HEADERS_LENGTH, f"at most {MAX_CHECKER_HEADERS_LENGTH} characters"),
    ],
)
def test_headers_that_are_not_name_value_pairs_are_refused(text, problem):
    error = refusal({"type": "HTTP", "headers": text})
    assert error.field == "healthChecker.headers"
    assert problem in error.problem, error.problem


TCHAR = st.sampled_from(list("!#$%&'*+.^_`~-") + [chr(c) for c in range(48, 58)] + [chr(c) for c in range(65, 91)])
NAMES = st.text(TCHAR, min_size=1, max_size=12)
VALUES = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="|"), max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), max_size=6))
def test_headers_written_as_nacos_writes_them_read_back(pairs):
    text = "|".join(f"{name}:{value}" for name, value in pairs)
    expected = tuple((name, value.strip()) for name, value in pairs if f"{name}:{value}".strip())
    assert checker_headers(text, "h") == expected


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_accepted_headers_never_carry_a_line_break_or_an_invalid_name(text):
    try:
        headers = checker_headers(text, "h")
    except InvalidValue:
        return
    for name, value in headers:
        assert name and name == name.strip() and all(c.isascii() and c.isprintable() and c != " " for c in name)
        assert not any(c in value for c in "\r\n\x00")


# -- the rest of the checker ----------------------------------------------------------------


def test_http_defaults_and_the_expected_code():
    assert parse_health_checker({"type": "HTTP"}, FIELD) == {
        "type": "HTTP",
        "path": "",
        "headers": "",
        "expectedResponseCode": 200,
    }
    for code in (99, 600):
        assert refusal({"type": "HTTP", "expectedResponseCode": code}).field == "healthChecker.expectedResponseCode"


def test_mysql_keeps_its_strings_and_bounds_the_command():
    document = {"type": "MYSQL", "user": "root", "pwd": "p:w|d", "cmd": "select 1", "other": 1}
    assert parse_health_checker(document, FIELD) == {"type": "MYSQL", "user": "root", "pwd": "p:w|d", "cmd": "select 1"}
    longest = "x" * MAX_CHECKER_COMMAND_LENGTH
    assert parse_health_checker({"type": "MYSQL", "cmd": longest}, FIELD)["cmd"] == longest
    error = refusal({"type": "MYSQL", "cmd": longest + "x"})
    assert error.field == "healthChecker.cmd" and f"at most {MAX_CHECKER_COMMAND_LENGTH}" in error.problem
    assert refusal({"type": "MYSQL", "pwd": "a\nb"}).field == "healthChecker.pwd"
    assert refusal({"type": "MYSQL", "user": 1}).field == FIELD


def test_other_types_keep_only_their_type():
    assert parse_health_checker({"type": "TCP", "path": "http://x"}, FIELD) == {"type": "TCP"}
    assert parse_health_checker({"type": "NONE", "pwd": "x"}, FIELD) == {"type": "NONE"}
