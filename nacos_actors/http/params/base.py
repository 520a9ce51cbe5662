"""Request parameters at the edge: the merged query and form values (Params, query_values),
the per-query-string memo (QueryMemo), the error every parser raises (ParamError), and the
scalar parsers the others build on: required values, booleans, bounded integers (page numbers
among them) and finite decimals. The value rules themselves live in nacos_actors.core.values,
shared with the codec of peer bodies and data files; `at_the_edge` turns a rule's InvalidValue
into the ParamError `Param '<name>' <problem>`.

Nacos reads parameters with `getParameter`, so they may come in the query string or in an
`application/x-www-form-urlencoded` body, for every verb; `Params` merges both (query first).
Values are trimmed and a blank value counts as absent. Every parser raises ParamError, whose
message names the parameter, so a bad request gets a 400 and reaches no actor. Pure functions:
they run on the event loop thread but touch nothing but their arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import wraps
from typing import Generic, ParamSpec, TypeVar
from urllib.parse import parse_qsl

from nacos_actors.core import values
from nacos_actors.core.values import InvalidValue, clip

MAX_INT32 = 2**31 - 1

_TRUE = "true"
_FALSE = "false"

T = TypeVar("T")
P = ParamSpec("P")
# Sized to the beats one node answers: about 25k/s here, so ~125k instances beating every 5 s.
MEMO_QUERIES = 1 << 17
MEMO_QUERY_LENGTH = 1024
# ... and bounded in bytes: each entry costs its query string plus about 400 bytes (measured with
# tracemalloc for list and beat queries), so 131,072 queries of up to 1,024 characters would
# have held about 190 MB.
MEMO_BYTES = 64 * 1024 * 1024
MEMO_ENTRY_OVERHEAD = 448


class ParamError(Exception):
    """A request parameter that cannot be used: answered as `status` with `message`."""

    def __init__(self, message: str, status: int = 400, close_connection: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        # Set when the rest of the body cannot be read, so the connection cannot be reused.
        self.close_connection = close_connection


class MissingParam(ParamError):
    """A required parameter that is absent (or blank): `Param '<name>' is required.`"""

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f"Param '{name}' is required.")


def at_the_edge(rule: Callable[P, T]) -> Callable[P, T]:
    """`rule` (a value rule of nacos_actors.core.values) raising ParamError `Param '<field>'
    <problem>` where the rule raises InvalidValue."""

    @wraps(rule)
    def checked(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return rule(*args, **kwargs)
        except InvalidValue as error:
            raise ParamError(f"Param '{error.field}' {error.problem}") from None

    return checked


class Params:
    """The merged, trimmed query and form parameters of one request.

    Each source maps a name to its first value (as Java's getParameter takes it): see
    `query_values`. `get(name)` is the value of `name`, trimmed, from the first source where it
    is not blank (the query before the form), or None. The values are merged into one dict up
    front, so each `get` is a C dict lookup.
    """

    __slots__ = ("get",)

    def __init__(self, *sources: Mapping[str, str]) -> None:
        values: dict[str, str]
        if len(sources) == 1:
            values = {name: value for name, raw in sources[0].items() if (value := raw.strip())}
        else:
            values = {}
            for source in sources:
                for name, raw in source.items():
                    if name not in values:
                        value = raw.strip()
                        if value:
                            values[name] = value
        self.get: Callable[[str], str | None] = values.get

    def first(self, *names: str) -> str | None:
        """The value of the first of `names` that is given (for Nacos's legacy aliases)."""
        for name in names:
            value = self.get(name)
            if value is not None:
                return value
        return None


def query_values(encoded: str, encoding: str = "utf-8") -> dict[str, str]:
    """The first value of each name in a raw (still percent-encoded) query string or form body,
    decoded as urllib's `parse_qsl(keep_blank_values=True)` and yarl's `URL.query` decode it:
    `+` is a space, `%XX` bytes in `encoding`; a name without `=` has the empty value. Bytes
    that do not decode become lone surrogates (U+DC80..U+DCFF, Python's surrogateescape)
    instead of U+FFFD, so the parsers of free text refuse them (nacos_actors.core.values
    check_text) and every other parser refuses them by its pattern: nothing undecodable is
    stored. For valid input this is exactly what yarl answers.

    Skips yarl's MultiDict, which a request's parameters do not need: each source keeps one
    value per name. Pure.
    """
    values: dict[str, str] = {}
    if "%" in encoded:
        for name, value in parse_qsl(encoded, keep_blank_values=True, encoding=encoding, errors="surrogateescape"):
            if name not in values:
                values[name] = value
        return values
    # Nothing to decode but '+', the same in every encoding.
    for part in encoded.replace("+", " ").split("&"):
        name, _, value = part.partition("=")
        if part and name not in values:
            values[name] = value
    return values


class QueryMemo(Generic[T]):
    """What `parse` makes of a request's parameters, remembered by the raw query string.

    Only for requests whose parameters all come in the query (no body): `parse` is a pure
    function of the parameters, so a client that polls or beats with the same URL pays for
    validation once. A query that fails raises ParamError every time and is never remembered.
    Holds at most `limit` queries of at most MEMO_QUERY_LENGTH characters, costing at most
    `max_bytes` (each its length plus MEMO_ENTRY_OVERHEAD); when full it starts afresh
    (amortised O(1), no per-entry bookkeeping). Event loop thread only.
    """

    __slots__ = ("_bytes", "_limit", "_max_bytes", "known", "parse")

    def __init__(self, parse: Callable[[Params], T], limit: int = MEMO_QUERIES, max_bytes: int = MEMO_BYTES) -> None:
        self.parse = parse
        self.known: dict[str, T] = {}
        self._limit = limit
        self._max_bytes = max_bytes
        self._bytes = 0

    def remember(self, query: str, params: Params) -> T:
        """`parse(params)`, kept under `query` (the raw query string those params came from)."""
        value = self.parse(params)
        if len(query) <= MEMO_QUERY_LENGTH:
            cost = len(query) + MEMO_ENTRY_OVERHEAD
            if len(self.known) >= self._limit or self._bytes + cost > self._max_bytes:
                self.known.clear()
                self._bytes = 0
            self.known[query] = value
            self._bytes += cost
        return value


def required(params: Params, name: str) -> str:
    value = params.get(name)
    if value is None:
        raise MissingParam(name)
    return value


def boolean(params: Params, default: bool, *names: str) -> bool:
    """`true` or `false` in any case; anything else is a 400 naming the parameter."""
    raw = params.first(*names)
    return default if raw is None else parse_boolean(raw, names[0])


def required_boolean(params: Params, *names: str) -> bool:
    """`true` or `false` from the first of `names` given; none given is 'Param <first> is required.'"""
    for name in names:
        raw = params.get(name)
        if raw is not None:
            return parse_boolean(raw, name)
    raise MissingParam(names[0])


def parse_boolean(raw: str, name: str) -> bool:
    lowered = raw.lower()
    if lowered == _TRUE:
        return True
    if lowered == _FALSE:
        return False
    raise ParamError(f"Param '{name}' must be true or false, got '{clip(raw)}'.")


parse_integer = at_the_edge(values.parse_integer)
number = at_the_edge(values.parse_number)


def integer(params: Params, name: str, default: int | None, low: int, high: int) -> int:
    """A whole number in low..high; required when `default` is None."""
    raw = params.get(name) if default is not None else required(params, name)
    if raw is None:
        return default  # type: ignore[return-value]
    return parse_integer(raw, name, low, high)


def page_number(params: Params, name: str, default: int | None = None) -> int:
    return integer(params, name, default, 1, MAX_INT32)
