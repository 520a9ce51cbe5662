"""What a request's headers say about its client: the agent (User-Agent, else Client-Version),
whether it takes a gzip answer, whether it is a Java client (Nacos's PUT semantics and grouped
`dom`) and whether Nacos would push to it. Pure functions (event loop thread)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache


def user_agent(headers: Mapping[str, str]) -> str:
    """Nacos's client agent: User-Agent, else Client-Version."""
    return headers.get("User-Agent") or headers.get("Client-Version") or ""


def accepts_gzip(headers: Mapping[str, str]) -> bool:
    """Whether `Accept-Encoding` lists gzip (or `*`) with a non-zero quality."""
    header = headers.get("Accept-Encoding")
    return bool(header) and _gzip_accepted(header)


@lru_cache(maxsize=256)
def _gzip_accepted(header: str) -> bool:
    for item in header.split(","):
        coding, _, parameters = item.partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        quality = parameters.strip().lower()
        if quality.startswith("q="):
            try:
                return float(quality[2:]) > 0
            except ValueError:
                return False
        return True
    return False


def is_java_client(headers: Mapping[str, str]) -> bool:
    """A Java client (or one posing as one, like Node's) of version 1.0.0 or later.

    Nacos uses this to decide PUT semantics and the grouped `dom` in list answers.
    """
    return is_java_agent(user_agent(headers))


@lru_cache(maxsize=256)
def is_java_agent(agent: str) -> bool:
    """`is_java_client` for a User-Agent (or Client-Version) value."""
    prefix = "Nacos-Java-Client:v"
    if not agent.startswith(prefix):
        return False
    return version_tuple(agent[len(prefix) :]) >= (1, 0, 0)


# Agents Nacos pushes to, with the least version of each (its switch defaults pushJavaVersion,
# pushPythonVersion for Nacos-DNS, pushCVersion, pushGoVersion, pushCSharpVersion).
PUSH_AGENTS = (
    ("Nacos-Java-Client", (0, 1, 0)),
    ("Nacos-DNS", (0, 4, 3)),
    ("Nacos-C-Client", (1, 0, 12)),
    ("vip-client4cpp", (1, 0, 12)),
    ("Nacos-Go-Client", (0, 1, 0)),
    ("Nacos-CSharp-Client", (0, 9, 0)),
)


@lru_cache(maxsize=256)
def is_push_client(agent: str) -> bool:
    """Whether Nacos would push to a client with this agent (`Name:v1.2.3`); Python's v1
    client (`Nacos-Python-Client`) and plain HTTP tools are not."""
    for name, least in PUSH_AGENTS:
        if agent.startswith(name):
            marker = agent.find(":v")
            return marker >= 0 and version_tuple(agent[marker + 2 :]) >= least
    return False


def version_tuple(text: str) -> tuple[int, int, int]:
    """`1.4.2-SNAPSHOT` -> (1, 4, 2); missing parts count as 0, so `1.0` equals `1.0.0`."""
    parts = [0, 0, 0]
    for index, piece in enumerate(text.split(".")[:3]):
        digits = re.match(r"\d+", piece)
        parts[index] = int(digits.group()) if digits else 0
    return parts[0], parts[1], parts[2]
