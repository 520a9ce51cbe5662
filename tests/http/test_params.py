"""Pure checks of the edge parsers that the HTTP tables do not reach directly."""

import pytest

from nacos_actors.http.params import is_java_client, version_tuple


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
