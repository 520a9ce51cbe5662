"""What every checker shares: how one probe ended (a Finding, before the prober adds its id and
time) and the rule that a probe only goes to an IP literal. Pure functions; any thread."""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from typing import NamedTuple

from nacos_actors.core.probing import PROBE_ERROR, ProbeTarget


class Finding(NamedTuple):
    """How a probe ended: one of core.probing.PROBE_OUTCOMES, whether Nacos fails the instance
    at once (`immediate`), and a short `detail` such as `http:500` (never a password)."""

    outcome: str
    immediate: bool
    detail: str


def probe_address(target: ProbeTarget) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The target's IP when it may be probed: an IPv4 or IPv6 literal without a zone (a zone
    would need the system's resolver) and a port in 1..65535. None otherwise: such a target is
    never connected to, so no probe ever asks a resolver or reaches another address."""
    if not 1 <= target.port <= 65_535:
        return None
    return _literal(target.ip)


def probe_family(target: ProbeTarget) -> int | None:
    """The socket family (AF_INET, AF_INET6) to probe `target` with, None when it may not be
    probed (probe_address)."""
    address = probe_address(target)
    if address is None:
        return None
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


# Remembered per address: the same ones come every few seconds, and parsing costs microseconds.
@lru_cache(maxsize=1 << 16)
def _literal(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return None
    return address


def not_probed(kind: str) -> Finding:
    """The finding of a target whose address is not an IP literal and port (probe_address)."""
    return Finding(PROBE_ERROR, False, f"{kind}:not an IP literal and port")
