"""How a member proves a call comes from it: an HMAC-SHA256 signature with the cluster secret
over the call's method, request target (path with query), body, the calling member's address
and the time, carried in headers; and the verdict on a call that claims to come from a member.

Every call between members is signed: member reports, Distro batches and digests, snapshot
loads and forwarded client requests (nacos_actors.peers.PeerLink signs, the HTTP front and the
simulation judge with `judge_peer_call`). A call is accepted only from another listed member,
from that member's IP address when it is listed by address, whose signature matches and whose
time is within `window_ms` of the receiver's clock: a replay of a captured call is refused once
the window has passed, and a forged or unsigned one at once. The secret itself never travels.

Pure: the secret, the request's parts and the time come in (nothing here reads a clock or a
socket); any thread.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Collection, Mapping
from dataclasses import dataclass

MEMBER_HEADER = "Nacos-Actors-Member"
TIMESTAMP_HEADER = "Nacos-Actors-Timestamp"
SIGNATURE_HEADER = "Nacos-Actors-Signature"
SIGNATURE_SCHEME = "v1"
# The first line of what is signed: a signature made for something else never matches.
_CONTEXT = "nacos-actors-peer-v1"
_MAX_TIMESTAMP_DIGITS = 16

# Why a call was refused (the `reason` label of nacos_actors_peer_rejected_total).
NOT_MEMBER = "not_member"
WRONG_ADDRESS = "wrong_address"
UNSIGNED = "unsigned"
STALE = "stale"
BAD_SIGNATURE = "bad_signature"
REJECT_REASONS = (NOT_MEMBER, WRONG_ADDRESS, UNSIGNED, STALE, BAD_SIGNATURE)


def signature(secret: str, method: str, target: str, member: str, timestamp_ms: int, body: bytes) -> str:
    """`v1=<hex>`: HMAC-SHA256 with `secret` over the method, the request target exactly as
    sent (path and query, still percent-encoded), the calling member, the time and the body's
    SHA-256. Changing any of them changes the signature."""
    canonical = "\n".join(
        (_CONTEXT, method.upper(), target, member, str(timestamp_ms), hashlib.sha256(body).hexdigest())
    )
    digest = hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    return f"{SIGNATURE_SCHEME}={digest}"


def signed_headers(secret: str, method: str, target: str, member: str, now_ms: int, body: bytes) -> dict[str, str]:
    """The headers that make a call from `member` to `target` acceptable to its peers now."""
    return {
        MEMBER_HEADER: member,
        TIMESTAMP_HEADER: str(now_ms),
        SIGNATURE_HEADER: signature(secret, method, target, member, now_ms, body),
    }


@dataclass(frozen=True, slots=True)
class PeerAccepted:
    """The call comes from `member`."""

    member: str


@dataclass(frozen=True, slots=True)
class PeerRefused:
    """The call is refused (a 403): `reason` is one of REJECT_REASONS, `message` names the header."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class PeerCallRules:
    """What this member accepts: calls from `peers` (every other member), signed with `secret`,
    made within `window_ms` of its clock."""

    self_address: str
    peers: Collection[str]
    secret: str
    window_ms: int


def judge_peer_call(
    rules: PeerCallRules,
    headers: Mapping[str, str],
    method: str,
    target: str,
    body: bytes,
    remote: str | None,
    now_ms: int,
) -> PeerAccepted | PeerRefused:
    """Whether a call (its headers, method, request target, body, the caller's IP `remote`)
    comes from a member: listed, calling from its own address, signed, in time. The signature
    is compared in constant time."""
    claimed = headers.get(MEMBER_HEADER, "")
    if claimed == rules.self_address or claimed not in rules.peers:
        return PeerRefused(NOT_MEMBER, f"Header '{MEMBER_HEADER}': {claimed[:64]!r} is not a member of this cluster")
    wrong_address = _address_problem(claimed, remote)
    if wrong_address is not None:
        return PeerRefused(WRONG_ADDRESS, wrong_address)
    timestamp_text = headers.get(TIMESTAMP_HEADER, "")
    given = headers.get(SIGNATURE_HEADER, "")
    if not given or not timestamp_text:
        return PeerRefused(
            UNSIGNED,
            f"Headers '{SIGNATURE_HEADER}' and '{TIMESTAMP_HEADER}' are required: members sign their calls "
            "with the cluster secret",
        )
    if not (timestamp_text.isascii() and timestamp_text.isdigit() and len(timestamp_text) <= _MAX_TIMESTAMP_DIGITS):
        return PeerRefused(UNSIGNED, f"Header '{TIMESTAMP_HEADER}' must be a time in ms, got {timestamp_text[:32]!r}")
    timestamp_ms = int(timestamp_text)
    if abs(now_ms - timestamp_ms) > rules.window_ms:
        return PeerRefused(
            STALE,
            f"Header '{TIMESTAMP_HEADER}': {timestamp_ms} is {now_ms - timestamp_ms} ms from this member's clock "
            f"(the limit is {rules.window_ms} ms)",
        )
    expected = signature(rules.secret, method, target, claimed, timestamp_ms, body)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        return PeerRefused(
            BAD_SIGNATURE, f"Header '{SIGNATURE_HEADER}' does not match this request signed with the cluster secret"
        )
    return PeerAccepted(claimed)


def _address_problem(claimed: str, remote: str | None) -> str | None:
    """Why a member listed by IP cannot be calling from `remote`; None when it can (or when it
    is listed by host name: then only the signature speaks for it)."""
    host = claimed.rpartition(":")[0].strip("[]")
    try:
        expected = ipaddress.ip_address(host)
    except ValueError:
        return None
    if remote is None:
        return None
    try:
        if ipaddress.ip_address(remote) != expected:
            return f"Header '{MEMBER_HEADER}': {claimed} does not match the caller"
    except ValueError:
        return f"Header '{MEMBER_HEADER}': the caller has no IP address"
    return None
