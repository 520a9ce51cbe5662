"""Pure checks of the edge parsers that the HTTP tables do not reach directly."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nacos_actors.http.params.clients import is_java_client, version_tuple


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"User-Agent": "Nacos-Java-Client:v1.0.0"}, True),
        ({"User-Agent": "Nacos-Java-Client:v1.4.2"}, True),
        ({"User-Agent": "Nacos-Java-Client:v1.0"}, True),
        ({"User-Agent": "Nacos-Java-Client:v2.1.0-SNAPSHOT"}, True),
        ({"User-Agent": "Nacos-Java-Client:v0.9.9"}, False),
        ({"User-Agent": "Nacos-Python-Client:v0.1.16"}, False),
        ({"User-Agent": "", "Client-Version": "Nacos-Java-Client:v1.0.0"}, True),
        ({}, False),
    ],
)
def test_java_clients_from_version_one_on(headers, expected):
    assert is_java_client(headers) is expected


def test_version_parts_default_to_zero():
    assert version_tuple("1") == (1, 0, 0)
    assert version_tuple("1.4.2.9") == (1, 4, 2)
    assert version_tuple("x.y") == (0, 0, 0)


def test_params_take_each_sources_first_value_query_before_form():
    from nacos_actors.http.params.base import Params, query_values

    query = query_values("a=+1+&a=2&b=%20&b=3&c=")
    params = Params(query, {"b": "form-b", "c": " form-c ", "d": "4"})
    assert params.get("a") == "1"
    assert params.get("b") == "form-b"  # the query's first b is blank: the form's counts
    assert params.get("c") == "form-c"
    assert params.get("d") == "4"
    assert params.get("e") is None
    assert params.first("e", "d", "a") == "4"


# Pieces of raw query strings: separators, encodings good and bad, '+', and non-ASCII text.
_QUERY_PIECES = st.sampled_from(
    ["a", "b", "serviceName", "=", "&", "&&", "+", "%", "%2", "%20", "%2B", "%26", "%3D", "%C3%A9", "%C3", "%FF",
     "%zz", " ", "é", "x y", ";", "?", "#"]
)


@settings(max_examples=500, deadline=None)
@given(raw=st.lists(_QUERY_PIECES, max_size=16).map("".join))
def test_query_values_are_yarls_first_values(raw):
    """query_values reads a raw query as aiohttp's request.query (yarl) does, keeping each
    name's first value: the parser the edge used before. Bytes that are not UTF-8 are kept as
    lone surrogates where yarl puts U+FFFD, so they can be refused: replaced, they are yarl's."""
    from multidict import MultiDict
    from yarl import URL

    from nacos_actors.core.values import is_valid_utf8
    from nacos_actors.http.params.base import query_values

    parsed: MultiDict[str] = MultiDict(URL.build(path="/", query_string=raw, encoded=True).query)
    expected = {name: parsed[name] for name in parsed}
    ours = query_values(raw)
    if all(is_valid_utf8(text) for pair in ours.items() for text in pair):
        assert ours == expected
    replaced: dict[str, str] = {}
    for name, value in ours.items():
        replaced.setdefault(_as_yarl_decodes(name), _as_yarl_decodes(value))
    assert replaced == expected


def _as_yarl_decodes(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def test_bytes_that_are_not_utf8_stay_detectable():
    from nacos_actors.core.values import is_valid_utf8
    from nacos_actors.http.params.base import query_values

    values = query_values("metadata=k%3Dv%FF&app=%C3%A9%C3&ok=%EF%BF%BD")
    assert values == {"metadata": "k=v\udcff", "app": "\u00e9\udcc3", "ok": "\ufffd"}
    assert [is_valid_utf8(v) for v in values.values()] == [False, False, True]
