"""Node settings: defaults, then a TOML file, then NACOS_ACTORS_* variables, then flags.

Pure: the caller passes the flags, the environment and a file reader in. Every value is parsed
and checked here once; a bad one raises SettingsError naming the setting.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "NACOS_ACTORS_"
DEFAULT_MEMBER_PORT = 8848
GRPC_PORT_OFFSET = 1000
# `\Z`, not `$`: `$` also matches before a trailing newline.
_HOSTNAME = re.compile(
    r"^(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\Z"
)
_CONTEXT_PATH = re.compile(r"^(/[A-Za-z0-9._~-]+)*\Z")
_DIGITS_AND_DOTS = re.compile(r"^[0-9.]+\Z")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a node needs to start; documented setting by setting in the README."""

    host: str = "127.0.0.1"
    port: int = 8848
    context_path: str = "/nacos"
    data_dir: Path | None = None
    members: tuple[str, ...] = ()
    max_body_bytes: int = 1024 * 1024
    request_timeout: float = 5.0
    max_connections: int = 4096
    header_timeout_ms: int = 10_000
    idle_timeout_ms: int = 30_000
    shutdown_timeout_ms: int = 5_000
    log_level: str = "INFO"
    log_format: str = "text"
    access_log: bool = False
    # Memory bounds (0: none): the instance/list memo and each rendered-instance cache in bytes;
    # metadata in UTF-8 bytes of its keys and values; instances per service and services per
    # namespace.
    list_memo_bytes: int = 32 * 1024 * 1024
    rendered_instances_bytes: int = 64 * 1024 * 1024
    max_instance_metadata_bytes: int = 16 * 1024
    max_service_metadata_bytes: int = 16 * 1024
    max_instances_per_service: int = 10_000
    max_services_per_namespace: int = 100_000
    health_check_enabled: bool = True
    expire_instances: bool = True
    empty_service_auto_clean: bool = False
    empty_service_ttl_ms: int = 60_000
    push_enabled: bool = True
    push_window_ms: int = 5
    push_cache_ms: int = 10_000
    push_ack_timeout_ms: int = 1_000
    push_max_sends: int = 3
    push_trust_client_ip: bool = False
    # Push with limits (issue 14, finding 6).
    push_max_subscribers_per_address: int = 1_024
    push_max_subscribers_per_service: int = 10_000
    push_max_subscribers: int = 100_000
    push_max_pending: int = 65_536
    push_receive_queue: int = 1_024
    push_give_up_log_interval_ms: int = 60_000
    # Push over gRPC (issue 16).
    push_grpc_ack_timeout_ms: int = 5_000
    push_max_subscribers_per_connection: int = 1_024
    cluster_secret: str | None = None
    member_report_interval_ms: int = 500
    member_fail_threshold: int = 3
    distro_sync_window_ms: int = 20
    distro_retry_delay_ms: int = 500
    distro_verify_interval_ms: int = 3_000
    # Replication that no service can block (issue 14, finding 3).
    # The largest service the default limits allow: 10,000 instances of up to 16 KiB metadata.
    peer_max_body_bytes: int = 256 * 1024 * 1024
    distro_quarantine_max_ms: int = 60_000
    cluster_signature_window_ms: int = 5_000
    # Persistent data through Raft (issue 15).
    raft_port: int | None = None
    member_raft_ports: tuple[tuple[str, int], ...] = ()
    raft_fsync: bool = True
    raft_election_timeout_ms: int = 400
    raft_proposal_timeout_ms: int = 3_000
    raft_max_pending: int = 10_000
    raft_snapshot_entries: int = 5_000
    raft_ready_timeout_ms: int = 10_000
    # The Nacos 2.x gRPC protocol (issue 16): its port (None: the HTTP port + 1000; 0: off).
    grpc_port: int | None = None
    grpc_max_receive_bytes: int = 10 * 1024 * 1024
    grpc_max_connections: int = 20_000
    grpc_detect_idle_ms: int = 20_000
    grpc_detect_timeout_ms: int = 5_000
    grpc_max_instances_per_connection: int = 10_000
    grpc_max_subscriptions_per_connection: int = 10_000
    grpc_stream_queue: int = 1_024
    # Active health probes of persistent instances (issue 17): every interval plus a jitter,
    # a timeout per probe, `health_check_times` consecutive results per verdict (Nacos's
    # checkTimes), at most `health_probe_max_in_flight` at once.
    health_probe_interval_ms: int = 2_000
    health_probe_jitter_ms: int = 1_000
    health_probe_timeout_ms: int = 500
    health_check_times: int = 3
    health_probe_max_in_flight: int = 1_024
    # Only instances in these networks are probed (empty: any address).
    health_probe_networks: tuple[str, ...] = ()

    @property
    def self_address(self) -> str:
        return join_host_port(self.host, self.port)

    def raft_address_of(self, member: str) -> str:
        """`host:port` of a member's Raft port: as its member entry gives it (`?raft_port=`),
        this node's `raft_port` setting for itself, else its HTTP port minus 1000 (Nacos's rule)."""
        given = dict(self.member_raft_ports).get(member)
        if member == self.self_address and self.raft_port is not None:
            given = self.raft_port
        host, _, port = member.rpartition(":")
        return f"{host}:{given if given is not None else int(port) - 1000}"

    @property
    def grpc_listen_port(self) -> int | None:
        """The gRPC port this node listens on (Nacos's rule: the HTTP port + 1000), None when
        gRPC is off (`grpc_port = 0`, or an HTTP port past 64535 with no gRPC port set)."""
        if self.grpc_port is None:
            port = self.port + GRPC_PORT_OFFSET
            return port if port <= 65535 else None
        return self.grpc_port or None

    @property
    def standalone(self) -> bool:
        return len(self.members) <= 1

    @property
    def group_members(self) -> tuple[str, ...]:
        """The members of this node's Raft group: the member list, or this node alone."""
        return self.members if not self.standalone else (self.self_address,)


def is_valid_host(host: str) -> bool:
    """An IPv4/IPv6 address or a DNS host name (digits and dots only must be IPv4)."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.match(host)) and not _DIGITS_AND_DOTS.match(host)


def join_host_port(host: str, port: int) -> str:
    """`host:port`, with an IPv6 address in brackets (`[::1]:8848`)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_member(text: str, setting: str) -> str:
    """`host[:port]` (IPv6 as `[addr]:port`, or a bare IPv6 address) -> `host:port`.

    The port is 8848 when left out (cluster.conf); IPv6 comes back compressed, in brackets. A
    `?raft_port=N` suffix (Nacos's member-list form) is checked and left out.
    """
    return parse_member_entry(text, setting)[0]


def parse_member_entry(text: str, setting: str) -> tuple[str, int | None]:
    """A member entry `host[:port][?raft_port=N]` -> (`host:port`, N or None)."""
    text, question, query = text.strip().partition("?")
    raft_port = None
    if question:
        name, equals, value = query.partition("=")
        if name.strip() != "raft_port" or not equals:
            raise SettingsError(f"{setting}: '{text}?{query}' may carry only ?raft_port=<port>")
        raft_port = _port(value, f"{setting} '{text}' raft_port")
    return _parse_address(text, setting), raft_port


def _parse_address(text: str, setting: str) -> str:
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise SettingsError(f"{setting}: '{text}' is not host[:port]")
        port_text = rest[1:] if rest else str(DEFAULT_MEMBER_PORT)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, str(DEFAULT_MEMBER_PORT)
    if not is_valid_host(host):
        raise SettingsError(f"{setting}: '{text}' is not host[:port]")
    if ":" in host:
        host = str(ipaddress.IPv6Address(host))
    return join_host_port(host, _port(port_text, f"{setting} '{text}'"))


def parse_members(items: list[str] | tuple[str, ...], setting: str) -> tuple[str, ...]:
    """A list of `host[:port]` (items may themselves be comma lists) -> unique addresses, in order."""
    return parse_member_list(items, setting)[0]


def parse_member_list(
    items: list[str] | tuple[str, ...], setting: str
) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    """Member entries (items may be comma lists) -> (unique addresses in order, the Raft ports
    given with `?raft_port=`)."""
    members: list[str] = []
    raft_ports: list[tuple[str, int]] = []
    for item in items:
        for part in str(item).split(","):
            if not part.strip():
                continue
            member, raft_port = parse_member_entry(part, setting)
            if member not in members:
                members.append(member)
                if raft_port is not None:
                    raft_ports.append((member, raft_port))
    return tuple(members), tuple(raft_ports)


def parse_cluster_conf(text: str, setting: str = "cluster_conf") -> tuple[str, ...]:
    """Nacos cluster.conf: one `ip[:port]` per line (or comma lists), `#` starts a comment."""
    return parse_cluster_conf_entries(text, setting)[0]


def parse_cluster_conf_entries(
    text: str, setting: str = "cluster_conf"
) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    """Nacos cluster.conf with each member's `?raft_port=`, as parse_member_list answers."""
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    return parse_member_list([line for line in lines if line.strip()], setting)


def _port(value: Any, setting: str) -> int:
    try:
        port = int(str(value).strip())
    except ValueError:
        raise SettingsError(f"{setting}: '{value}' is not a port number") from None
    if not 1 <= port <= 65535:
        raise SettingsError(f"{setting}: {port} is not in 1..65535")
    return port


def _positive_int(value: Any, setting: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise SettingsError(f"{setting}: '{value}' is not a whole number") from None
    if number < 1:
        raise SettingsError(f"{setting}: must be at least 1")
    return number


def _positive_float(value: Any, setting: str) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise SettingsError(f"{setting}: '{value}' is not a number") from None
    if not 0 < number < 3600:
        raise SettingsError(f"{setting}: must be between 0 and 3600 seconds")
    return number


def _int_between(low: int, high: int) -> Callable[[Any, str], int]:
    def parse(value: Any, setting: str) -> int:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise SettingsError(f"{setting}: '{value}' is not a whole number") from None
        if not low <= number <= high:
            raise SettingsError(f"{setting}: {number} is not in {low}..{high}")
        return number

    return parse


def _bool(value: Any, setting: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise SettingsError(f"{setting}: '{value}' is not true or false")


def _host(value: Any, setting: str) -> str:
    host = str(value).strip()
    if not is_valid_host(host):
        raise SettingsError(f"{setting}: '{host}' is not an IP address or host name")
    return host


def _context_path(value: Any, setting: str) -> str:
    path = "/" + str(value).strip().strip("/")
    path = "" if path == "/" else path
    if not _CONTEXT_PATH.match(path):
        raise SettingsError(f"{setting}: '{value}' is not a URL path like /nacos")
    return path


def _log_level(value: Any, setting: str) -> str:
    level = str(value).strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"{setting}: '{value}' is not one of DEBUG, INFO, WARNING, ERROR")
    return level


def _log_format(value: Any, setting: str) -> str:
    text = str(value).strip().lower()
    if text not in ("text", "json"):
        raise SettingsError(f"{setting}: '{value}' is not text or json")
    return text


def _secret(value: Any, setting: str) -> str | None:
    text = str(value).strip()
    if not text:
        return None
    if len(text) < 8 or not text.isprintable():
        raise SettingsError(f"{setting}: a cluster secret is at least 8 printable characters")
    return text


def _networks(value: Any, setting: str) -> tuple[str, ...]:
    """CIDR networks, comma-separated or a list (`127.0.0.0/8,::1`); host bits are masked."""
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    networks = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise SettingsError(f"{setting}: '{text}' is not an IP network (such as 10.0.0.0/8)") from None
    return tuple(networks)


_PARSERS: dict[str, Callable[[Any, str], Any]] = {
    "host": _host,
    "port": _port,
    "context_path": _context_path,
    "data_dir": lambda value, setting: Path(str(value)).expanduser(),
    "max_body_bytes": _positive_int,
    "request_timeout": _positive_float,
    "max_connections": _int_between(1, 1_000_000),
    "header_timeout_ms": _int_between(100, 600_000),
    "idle_timeout_ms": _int_between(100, 3_600_000),
    "shutdown_timeout_ms": _int_between(500, 600_000),
    "log_level": _log_level,
    "log_format": _log_format,
    "access_log": _bool,
    "list_memo_bytes": _int_between(0, 1 << 40),
    "rendered_instances_bytes": _int_between(0, 1 << 40),
    "max_instance_metadata_bytes": _int_between(0, 1 << 30),
    "max_service_metadata_bytes": _int_between(0, 1 << 30),
    "max_instances_per_service": _int_between(0, 1 << 31),
    "max_services_per_namespace": _int_between(0, 1 << 31),
    "health_check_enabled": _bool,
    "expire_instances": _bool,
    "empty_service_auto_clean": _bool,
    "empty_service_ttl_ms": _int_between(1_000, 86_400_000),
    "push_enabled": _bool,
    "push_window_ms": _int_between(0, 1_000),
    "push_cache_ms": _int_between(1_000, 3_600_000),
    "push_ack_timeout_ms": _int_between(10, 60_000),
    "push_max_sends": _int_between(1, 10),
    "push_trust_client_ip": _bool,
    "push_max_subscribers_per_address": _int_between(1, 10_000_000),
    "push_max_subscribers_per_service": _int_between(1, 10_000_000),
    "push_max_subscribers": _int_between(1, 10_000_000),
    "push_max_pending": _int_between(1, 10_000_000),
    "push_receive_queue": _int_between(1, 1_000_000),
    "push_give_up_log_interval_ms": _int_between(100, 3_600_000),
    "push_grpc_ack_timeout_ms": _int_between(10, 60_000),
    "push_max_subscribers_per_connection": _int_between(1, 10_000_000),
    "cluster_secret": _secret,
    "member_report_interval_ms": _int_between(50, 60_000),
    "member_fail_threshold": _int_between(0, 100),
    "distro_sync_window_ms": _int_between(0, 10_000),
    "distro_retry_delay_ms": _int_between(10, 60_000),
    "distro_verify_interval_ms": _int_between(100, 600_000),
    "peer_max_body_bytes": _positive_int,
    "distro_quarantine_max_ms": _int_between(10, 3_600_000),
    "cluster_signature_window_ms": _int_between(1_000, 300_000),
    "raft_port": _port,
    "raft_fsync": _bool,
    "raft_election_timeout_ms": _int_between(150, 10_000),
    "raft_proposal_timeout_ms": _int_between(100, 600_000),
    "raft_max_pending": _int_between(1, 10_000_000),
    "raft_snapshot_entries": _int_between(2, 100_000_000),
    "raft_ready_timeout_ms": _int_between(0, 3_600_000),
    "grpc_port": _int_between(0, 65535),
    "grpc_max_receive_bytes": _int_between(1024, 1 << 30),
    "grpc_max_connections": _int_between(1, 10_000_000),
    "grpc_detect_idle_ms": _int_between(100, 3_600_000),
    "grpc_detect_timeout_ms": _int_between(50, 600_000),
    "grpc_max_instances_per_connection": _int_between(1, 10_000_000),
    "grpc_max_subscriptions_per_connection": _int_between(1, 10_000_000),
    "grpc_stream_queue": _int_between(1, 1_000_000),
    "health_probe_interval_ms": _int_between(100, 3_600_000),
    "health_probe_jitter_ms": _int_between(0, 3_600_000),
    "health_probe_timeout_ms": _int_between(10, 60_000),
    "health_check_times": _int_between(1, 100),
    "health_probe_max_in_flight": _int_between(1, 1_000_000),
    "health_probe_networks": _networks,
}
SETTING_NAMES = tuple(f.name for f in fields(Settings) if f.name != "member_raft_ports")


def _apply(settings: Settings, values: Mapping[str, Any], source: str, read_text: Callable[[Path], str]) -> Settings:
    """Overlay one source's raw values (names as in Settings, plus members/cluster_conf)."""
    changes: dict[str, Any] = {}
    for name, raw in values.items():
        if raw is None:
            continue
        label = f"{source} {name}"
        if name == "members":
            items = raw if isinstance(raw, (list, tuple)) else [raw]
            changes["members"], changes["member_raft_ports"] = parse_member_list(list(items), label)
        elif name == "cluster_conf":
            path = Path(str(raw)).expanduser()
            try:
                changes["members"], changes["member_raft_ports"] = parse_cluster_conf_entries(read_text(path), label)
            except OSError as error:
                raise SettingsError(f"{label}: cannot read {path}: {error.strerror}") from None
        elif name in _PARSERS:
            changes[name] = _PARSERS[name](raw, label)
        else:
            raise SettingsError(f"{source.rstrip(':')}: unknown setting '{name}'")
    return replace(settings, **changes)


def load_settings(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    read_text: Callable[[Path], str] = lambda path: path.read_text(encoding="utf-8"),
) -> Settings:
    """Defaults < config file < environment < flags. `flags` holds None for flags not given."""
    settings = Settings()
    config_path = flags.get("config") or environ.get(ENV_PREFIX + "CONFIG")
    if config_path:
        path = Path(config_path).expanduser()
        try:
            document = tomllib.loads(read_text(path))
        except OSError as error:
            raise SettingsError(f"config: cannot read {path}: {error.strerror}") from None
        except tomllib.TOMLDecodeError as error:
            raise SettingsError(f"config: {path} is not valid TOML: {error}") from None
        if "members" in document and "cluster_conf" in document:
            raise SettingsError(f"config {path}: set members or cluster_conf, not both")
        settings = _apply(settings, document, f"config {path}:", read_text)
    names = (*SETTING_NAMES, "cluster_conf")
    from_env = {name: environ.get(ENV_PREFIX + name.upper()) for name in names}
    if from_env.get("members") is not None and from_env.get("cluster_conf") is not None:
        raise SettingsError("environment: set NACOS_ACTORS_MEMBERS or NACOS_ACTORS_CLUSTER_CONF, not both")
    settings = _apply(settings, from_env, "environment", read_text)
    from_flags = {name: flags.get(name) for name in names}
    if from_flags.get("members") is not None and from_flags.get("cluster_conf") is not None:
        raise SettingsError("--members and --cluster-conf: give one, not both")
    return _apply(settings, from_flags, "flag", read_text)
