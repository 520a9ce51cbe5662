"""Settings: defaults < TOML config < NACOS_ACTORS_* environment < flags, each value checked once.

Pure: files are served from a dict through `read_text`, except the shipped config/ examples.
"""

from __future__ import annotations

import ipaddress
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nacos_actors.settings import (
    DEFAULT_MEMBER_PORT,
    SETTING_NAMES,
    Settings,
    SettingsError,
    parse_cluster_conf_entries,
    load_settings,
    parse_cluster_conf,
    parse_member,
    parse_members,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"


def files(**by_name: str):
    """A read_text serving in-memory files by name; anything else is missing."""

    def read_text(path: Path) -> str:
        try:
            return by_name[str(path)]
        except KeyError:
            raise FileNotFoundError(2, "No such file or directory", str(path)) from None

    return read_text


def load(flags=None, env=None, **texts: str) -> Settings:
    return load_settings(flags or {}, env or {}, files(**texts))


def error_of(flags=None, env=None, **texts: str) -> str:
    with pytest.raises(SettingsError) as caught:
        load(flags, env, **texts)
    return str(caught.value)


# -- defaults and precedence -------------------------------------------------------------


def test_nothing_given_is_the_defaults():
    assert load() == Settings()
    assert Settings().self_address == "127.0.0.1:8848"
    assert Settings().standalone


def test_flags_not_given_are_none_and_change_nothing():
    assert load({name: None for name in (*SETTING_NAMES, "cluster_conf", "config")}) == Settings()


def test_precedence_defaults_config_environment_flags():
    config = "port = 1001\nlog_level = 'DEBUG'\nhost = '127.0.0.2'\nrequest_timeout = 2\n"
    env = {"NACOS_ACTORS_CONFIG": "c.toml", "NACOS_ACTORS_PORT": "1002", "NACOS_ACTORS_LOG_LEVEL": "warning"}
    flags = {"port": "1003"}
    settings = load(flags, env, **{"c.toml": config})
    assert settings.port == 1003  # flag over environment over config
    assert settings.log_level == "WARNING"  # environment over config
    assert settings.host == "127.0.0.2"  # config over default
    assert settings.request_timeout == 2.0
    assert settings.context_path == "/nacos"  # default
    assert load({}, env, **{"c.toml": config}).port == 1002
    assert load({}, {"NACOS_ACTORS_CONFIG": "c.toml"}, **{"c.toml": config}).port == 1001


def test_the_config_flag_wins_over_the_config_variable():
    texts = {"a.toml": "port = 1111\n", "b.toml": "port = 2222\n"}
    assert load({"config": "b.toml"}, {"NACOS_ACTORS_CONFIG": "a.toml"}, **texts).port == 2222


def test_members_from_a_flag_replace_a_cluster_conf_from_the_config():
    texts = {"c.toml": "cluster_conf = 'cluster.conf'\n", "cluster.conf": "127.0.0.1:1\n127.0.0.1:2\n"}
    assert load({"config": "c.toml"}, **texts).members == ("127.0.0.1:1", "127.0.0.1:2")
    assert load({"config": "c.toml", "members": "127.0.0.1:3"}, **texts).members == ("127.0.0.1:3",)
    env = {"NACOS_ACTORS_MEMBERS": "127.0.0.1:4"}
    assert load({"config": "c.toml"}, env, **texts).members == ("127.0.0.1:4",)


def test_every_setting_from_the_environment():
    env = {
        "NACOS_ACTORS_HOST": "::1",
        "NACOS_ACTORS_PORT": "9000",
        "NACOS_ACTORS_CONTEXT_PATH": "/registry/",
        "NACOS_ACTORS_DATA_DIR": "/tmp/nacos-data",
        "NACOS_ACTORS_MEMBERS": "127.0.0.1:9000, 127.0.0.2",
        "NACOS_ACTORS_MAX_BODY_BYTES": "2048",
        "NACOS_ACTORS_REQUEST_TIMEOUT": "0.5",
        "NACOS_ACTORS_MAX_CONNECTIONS": "10",
        "NACOS_ACTORS_HEADER_TIMEOUT_MS": "1000",
        "NACOS_ACTORS_IDLE_TIMEOUT_MS": "2000",
        "NACOS_ACTORS_SHUTDOWN_TIMEOUT_MS": "3000",
        "NACOS_ACTORS_LOG_LEVEL": "error",
        "NACOS_ACTORS_LOG_FORMAT": "JSON",
        "NACOS_ACTORS_ACCESS_LOG": "yes",
    }
    assert load({}, env) == Settings(
        host="::1",
        port=9000,
        context_path="/registry",
        data_dir=Path("/tmp/nacos-data"),
        members=("127.0.0.1:9000", "127.0.0.2:8848"),
        max_body_bytes=2048,
        request_timeout=0.5,
        max_connections=10,
        header_timeout_ms=1000,
        idle_timeout_ms=2000,
        shutdown_timeout_ms=3000,
        log_level="ERROR",
        log_format="json",
        access_log=True,
    )


def test_every_setting_from_flags():
    flags = {
        "host": "localhost",
        "port": "8849",
        "context_path": "nacos",
        "data_dir": "~/nacos-data",
        "members": "127.0.0.1:8848,127.0.0.1:8849",
        "max_body_bytes": "100",
        "request_timeout": "30",
        "max_connections": "20000",
        "header_timeout_ms": "100",
        "idle_timeout_ms": "3600000",
        "shutdown_timeout_ms": "600000",
        "log_level": "Debug",
        "log_format": "json",
        "access_log": True,
    }
    assert load(flags) == Settings(
        host="localhost",
        port=8849,
        context_path="/nacos",
        data_dir=Path("~/nacos-data").expanduser(),
        members=("127.0.0.1:8848", "127.0.0.1:8849"),
        max_body_bytes=100,
        request_timeout=30.0,
        max_connections=20000,
        header_timeout_ms=100,
        idle_timeout_ms=3_600_000,
        shutdown_timeout_ms=600_000,
        log_level="DEBUG",
        log_format="json",
        access_log=True,
    )


def test_every_setting_from_a_config_file():
    text = """
        host = "0.0.0.0"
        port = 18848
        context_path = "/"
        data_dir = "/var/lib/nacos-actors"
        members = ["127.0.0.1:18848", "127.0.0.1:18849,127.0.0.1:18850"]
        max_body_bytes = 4096
        request_timeout = 1
        max_connections = 1
        header_timeout_ms = 600000
        idle_timeout_ms = 100
        shutdown_timeout_ms = 500
        log_level = "warning"
        log_format = " Json "
        access_log = true
    """
    assert load({"config": "n.toml"}, **{"n.toml": text}) == Settings(
        host="0.0.0.0",
        port=18848,
        context_path="",
        data_dir=Path("/var/lib/nacos-actors"),
        members=("127.0.0.1:18848", "127.0.0.1:18849", "127.0.0.1:18850"),
        max_body_bytes=4096,
        request_timeout=1.0,
        max_connections=1,
        header_timeout_ms=600_000,
        idle_timeout_ms=100,
        shutdown_timeout_ms=500,
        log_level="WARNING",
        log_format="json",
        access_log=True,
    )


def test_a_members_string_in_the_config_file():
    assert load({"config": "n.toml"}, **{"n.toml": "members = '127.0.0.1:1,127.0.0.1:2'"}).members == (
        "127.0.0.1:1",
        "127.0.0.1:2",
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/nacos", "/nacos"),
        ("nacos", "/nacos"),
        ("/nacos/", "/nacos"),
        ("/", ""),
        ("", ""),
        ("/a/b-c.d_e~f", "/a/b-c.d_e~f"),
    ],
)
def test_context_path_forms(raw, expected):
    assert load({"context_path": raw}).context_path == expected


@pytest.mark.parametrize("raw", ["true", "TRUE", "1", "yes", "on", " On "])
def test_true_words(raw):
    assert load({}, {"NACOS_ACTORS_ACCESS_LOG": raw}).access_log is True


@pytest.mark.parametrize("raw", ["false", "0", "no", "OFF"])
def test_false_words(raw):
    assert load({}, {"NACOS_ACTORS_ACCESS_LOG": raw}).access_log is False


def test_standalone_and_self_address():
    assert load({"members": "127.0.0.1:8848"}).standalone
    assert not load({"members": "127.0.0.1:8848,127.0.0.1:8849"}).standalone
    assert load({"host": "localhost", "port": "1234"}).self_address == "localhost:1234"
    assert load({"host": "::1", "port": "1234"}).self_address == "[::1]:1234"


def test_the_memory_bounds_from_each_source():
    names = (
        "list_memo_bytes",
        "rendered_instances_bytes",
        "max_instance_metadata_bytes",
        "max_service_metadata_bytes",
        "max_instances_per_service",
        "max_services_per_namespace",
    )
    expected = {name: index for index, name in enumerate(names)}  # 0 (none) included
    assert load({name: str(value) for name, value in expected.items()}) == Settings(**expected)
    env = {f"NACOS_ACTORS_{name.upper()}": f" {value} " for name, value in expected.items()}
    assert load({}, env) == Settings(**expected)
    text = "".join(f"{name} = {value}\n" for name, value in expected.items())
    assert load({"config": "m.toml"}, **{"m.toml": text}) == Settings(**expected)
    for name in names:
        assert name in error_of({name: "-1"})
        assert "not a whole number" in error_of({name: "16k"})


PROBE_SETTINGS = {
    "health_probe_interval_ms": 1500,
    "health_probe_jitter_ms": 0,
    "health_probe_timeout_ms": 250,
    "health_check_times": 2,
    "health_probe_max_in_flight": 20,
}


def test_the_probe_settings_default_as_documented():
    defaults = Settings()
    assert (
        defaults.health_probe_interval_ms,
        defaults.health_probe_jitter_ms,
        defaults.health_probe_timeout_ms,
        defaults.health_check_times,
        defaults.health_probe_max_in_flight,
    ) == (2000, 1000, 500, 3, 1024)


def test_the_probe_settings_from_each_source():
    expected = Settings(**PROBE_SETTINGS, health_check_enabled=False)
    assert load({**{k: str(v) for k, v in PROBE_SETTINGS.items()}, "health_check_enabled": "false"}) == expected
    env = {f"NACOS_ACTORS_{name.upper()}": f" {value} " for name, value in PROBE_SETTINGS.items()}
    assert load({}, {**env, "NACOS_ACTORS_HEALTH_CHECK_ENABLED": "no"}) == expected
    text = "".join(f"{name} = {value}\n" for name, value in PROBE_SETTINGS.items()) + "health_check_enabled = false\n"
    assert load({"config": "p.toml"}, **{"p.toml": text}) == expected


def test_probe_networks_are_cidr_lists_from_each_source():
    expected = ("127.0.0.0/8", "10.1.0.0/16", "::1/128")
    assert Settings().health_probe_networks == ()
    assert load({"health_probe_networks": "127.0.0.1/8, 10.1.2.3/16,::1"}).health_probe_networks == expected
    env = {"NACOS_ACTORS_HEALTH_PROBE_NETWORKS": "127.0.0.0/8,10.1.0.0/16,::1/128"}
    assert load({}, env).health_probe_networks == expected
    text = 'health_probe_networks = ["127.0.0.0/8", "10.1.0.0/16", "::1"]\n'
    assert load({"config": "n.toml"}, **{"n.toml": text}).health_probe_networks == expected
    assert "health_probe_networks" in error_of({"health_probe_networks": "10.0.0.0/33"})
    assert "not an IP network" in error_of({"health_probe_networks": "localhost"})


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("health_probe_interval_ms", 100, 3_600_000),
        ("health_probe_jitter_ms", 0, 3_600_000),
        ("health_probe_timeout_ms", 10, 60_000),
        ("health_check_times", 1, 100),
        ("health_probe_max_in_flight", 1, 1_000_000),
    ],
)
def test_the_probe_settings_bounds(name, low, high):
    assert getattr(load({name: str(low)}), name) == low
    assert getattr(load({name: str(high)}), name) == high
    for outside in (low - 1, high + 1):
        message = error_of({name: str(outside)})
        assert name in message and f"not in {low}..{high}" in message
    assert "not a whole number" in error_of({name: "1s"})


# -- validation: every bad value is a SettingsError naming the setting -----------------------


@pytest.mark.parametrize(
    ("flags", "named", "detail"),
    [
        ({"host": "not a host"}, "host", "not an IP address or host name"),
        ({"host": "-bad-.example"}, "host", "not an IP address or host name"),
        ({"port": "0"}, "port", "not in 1..65535"),
        ({"port": "65536"}, "port", "not in 1..65535"),
        ({"port": "http"}, "port", "not a port number"),
        ({"port": "1.5"}, "port", "not a port number"),
        ({"context_path": "/with space"}, "context_path", "not a URL path"),
        ({"context_path": "/a?b"}, "context_path", "not a URL path"),
        ({"members": "nonsense:xx"}, "members", "not a port number"),
        ({"members": "127.0.0.1:0"}, "members", "not in 1..65535"),
        ({"members": "bad host:1"}, "members", "not host[:port]"),
        ({"members": "[::1"}, "members", "not host[:port]"),
        ({"members": "[::1]x"}, "members", "not host[:port]"),
        ({"members": "[::1]:x"}, "members", "'[::1]:x': 'x' is not a port number"),
        ({"host": "999.1.1.1"}, "host", "not an IP address or host name"),
        ({"cluster_conf": "missing.conf"}, "cluster_conf", "cannot read missing.conf"),
        ({"max_body_bytes": "0"}, "max_body_bytes", "at least 1"),
        ({"max_body_bytes": "1k"}, "max_body_bytes", "not a whole number"),
        ({"peer_max_body_bytes": "0"}, "peer_max_body_bytes", "at least 1"),
        ({"distro_quarantine_max_ms": "9"}, "distro_quarantine_max_ms", "not in 10..3600000"),
        ({"push_max_subscribers_per_address": "0"}, "push_max_subscribers_per_address", "not in 1..10000000"),
        ({"push_max_pending": "-1"}, "push_max_pending", "not in 1..10000000"),
        ({"push_give_up_log_interval_ms": "99"}, "push_give_up_log_interval_ms", "not in 100..3600000"),
        ({"request_timeout": "0"}, "request_timeout", "between 0 and 3600"),
        ({"request_timeout": "3600"}, "request_timeout", "between 0 and 3600"),
        ({"request_timeout": "nan"}, "request_timeout", "between 0 and 3600"),
        ({"request_timeout": "soon"}, "request_timeout", "not a number"),
        ({"max_connections": "0"}, "max_connections", "not in 1..1000000"),
        ({"header_timeout_ms": "99"}, "header_timeout_ms", "not in 100..600000"),
        ({"idle_timeout_ms": "3600001"}, "idle_timeout_ms", "not in 100..3600000"),
        ({"shutdown_timeout_ms": "499"}, "shutdown_timeout_ms", "not in 500..600000"),
        ({"shutdown_timeout_ms": "5s"}, "shutdown_timeout_ms", "not a whole number"),
        ({"log_level": "LOUD"}, "log_level", "not one of DEBUG, INFO, WARNING, ERROR"),
        ({"log_format": "xml"}, "log_format", "'xml' is not text or json"),
        ({"config": "missing.toml"}, "config", "cannot read missing.toml"),
    ],
)
def test_bad_flags_name_the_setting(flags, named, detail):
    message = error_of(flags)
    assert named in message
    assert detail in message


def test_a_bad_environment_value_names_the_variable_source():
    message = error_of({}, {"NACOS_ACTORS_PORT": "x"})
    assert message == "environment port: 'x' is not a port number"
    assert "access_log" in error_of({}, {"NACOS_ACTORS_ACCESS_LOG": "maybe"})


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("port = 'x'", "port"),
        ("port = true", "port"),
        ("max_body_bytes = 1.5", "max_body_bytes"),
        ("access_log = 'maybe'", "access_log"),
        ("members = ['127.0.0.1:99999']", "members"),
        ("log_level = 3", "log_level"),
        ("log_format = 'yaml'", "log_format"),
    ],
)
def test_bad_config_values_name_the_file_and_setting(text, named):
    message = error_of({"config": "n.toml"}, **{"n.toml": text})
    assert message.startswith("config n.toml: ")
    assert named in message


def test_an_unknown_config_setting_is_an_error():
    assert error_of({"config": "n.toml"}, **{"n.toml": "prot = 8848"}) == "config n.toml: unknown setting 'prot'"
    assert "unknown setting 'server'" in error_of({"config": "n.toml"}, **{"n.toml": "[server]\nport = 1"})


def test_a_config_that_is_not_toml():
    message = error_of({"config": "n.toml"}, **{"n.toml": "port = = 1"})
    assert message.startswith("config: n.toml is not valid TOML")


def test_members_and_cluster_conf_together_are_an_error():
    texts = {"cluster.conf": "127.0.0.1:1\n"}
    message = error_of({"members": "127.0.0.1:1", "cluster_conf": "cluster.conf"}, **texts)
    assert "--members" in message and "--cluster-conf" in message
    env = {"NACOS_ACTORS_MEMBERS": "127.0.0.1:1", "NACOS_ACTORS_CLUSTER_CONF": "cluster.conf"}
    message = error_of({}, env, **texts)
    assert "NACOS_ACTORS_MEMBERS" in message and "NACOS_ACTORS_CLUSTER_CONF" in message
    both = "members = ['127.0.0.1:1']\ncluster_conf = 'cluster.conf'\n"
    message = error_of({"config": "n.toml"}, **texts, **{"n.toml": both})
    assert "members" in message and "cluster_conf" in message


def test_settings_error_is_a_value_error():
    assert issubclass(SettingsError, ValueError)


def test_every_settings_field_has_a_parser_and_a_flag():
    from nacos_actors.cli import build_parser

    destinations = set(vars(build_parser().parse_args(["serve"])))
    # member_raft_ports has no flag of its own: it comes from `?raft_port=` in member entries.
    assert {f.name for f in fields(Settings)} - {"member_raft_ports"} | {"cluster_conf", "config"} <= destinations


# -- cluster.conf and member lists -------------------------------------------------------


def test_cluster_conf_format():
    text = """
        # a comment line
        127.0.0.1:8848   # a trailing comment
        127.0.0.2

        127.0.0.3:8849,127.0.0.4:8850 ,  127.0.0.5
        [::1]:9000
        [fe80::1]
        node-1.example.com:7000
        127.0.0.1:8848
    """
    assert parse_cluster_conf(text) == (
        "127.0.0.1:8848",
        "127.0.0.2:8848",
        "127.0.0.3:8849",
        "127.0.0.4:8850",
        "127.0.0.5:8848",
        "[::1]:9000",
        "[fe80::1]:8848",
        "node-1.example.com:7000",
    )


def test_an_empty_cluster_conf_is_standalone():
    assert parse_cluster_conf("# nobody\n\n") == ()


def test_a_bad_cluster_conf_line_names_the_setting():
    with pytest.raises(SettingsError, match=r"^cluster_conf 'x:y': 'y' is not a port number$"):
        parse_cluster_conf("127.0.0.1\nx:y\n")


def test_parse_member_default_port():
    assert parse_member(" 10.0.0.1 ", "members") == f"10.0.0.1:{DEFAULT_MEMBER_PORT}"
    assert parse_member("[::1]", "members") == "[::1]:8848"
    assert parse_member("::1", "members") == "[::1]:8848"


hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.from_regex(r"\A[a-z][a-z0-9-]{0,10}[a-z0-9](\.[a-z][a-z0-9]{0,5}){0,3}\Z"),
)
ports = st.integers(1, 65535)


def written(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@given(st.lists(st.tuples(hosts, ports), max_size=8))
def test_parse_members_round_trips(pairs):
    addresses = [written(host, port) for host, port in pairs]
    parsed = parse_members([",".join(addresses)], "members")
    assert parsed == tuple(dict.fromkeys(addresses))
    assert parse_members(list(parsed), "members") == parsed
    assert parse_cluster_conf("\n".join(parsed)) == parsed


@given(hosts)
def test_a_member_without_a_port_gets_8848(host):
    text = f"[{host}]" if ":" in host else host
    assert parse_member(text, "members") == written(host, DEFAULT_MEMBER_PORT)


@given(st.text(max_size=40))
def test_parse_member_refuses_or_gives_a_canonical_address(text):
    """Any text is either refused with a SettingsError naming the setting, or parsed into an
    address that parses to itself and holds no whitespace."""
    try:
        member = parse_member(text, "members")
    except SettingsError as error:
        assert str(error).startswith("members")
        return
    assert parse_member(member, "members") == member
    assert not any(c.isspace() for c in member)


def test_a_trailing_newline_inside_brackets_is_refused():
    with pytest.raises(SettingsError, match="not host"):
        parse_member("[localhost\n]:80", "members")


@given(st.integers().filter(lambda n: not 1 <= n <= 65535))
def test_ports_out_of_range_are_refused(port):
    with pytest.raises(SettingsError, match="^flag port: "):
        load({"port": str(port)})


@given(st.ip_addresses())
def test_any_ip_address_is_a_host(address):
    assert load({"host": str(address)}).host == str(address)


# -- the shipped config/ files -------------------------------------------------------------


COMMENTED_OUT = ("data_dir", "members", "cluster_conf", "cluster_secret", "raft_port", "grpc_port")  # no value by default


def test_the_example_config_is_the_defaults():
    """config/nacos-actors.toml names every setting; the ones set are at their defaults and
    only those without a default value (COMMENTED_OUT) are commented out."""
    path = CONFIG / "nacos-actors.toml"
    assert load_settings({"config": str(path)}, {}) == Settings()
    text = path.read_text()
    for name in (*SETTING_NAMES, "cluster_conf"):
        line = f"\n# {name} = " if name in COMMENTED_OUT else f"\n{name} = "
        assert line in text, name


@pytest.mark.parametrize("members_from", ["members", "cluster_conf"])
def test_the_example_config_with_its_commented_lines_enabled(monkeypatch, members_from):
    monkeypatch.chdir(REPO)
    text = (CONFIG / "nacos-actors.toml").read_text()
    for name in ("data_dir", members_from):
        text = text.replace(f"\n# {name} = ", f"\n{name} = ")
    settings = load_settings({"config": "x.toml"}, {}, lambda p: text if str(p) == "x.toml" else p.read_text())
    assert settings.data_dir == Path("/var/lib/nacos-actors")
    assert settings.members == ("127.0.0.1:8848", "127.0.0.1:8849", "127.0.0.1:8850")


def test_the_example_cluster_conf():
    assert parse_cluster_conf((CONFIG / "cluster.conf").read_text()) == (
        "127.0.0.1:8848",
        "127.0.0.1:8849",
        "127.0.0.1:8850",
    )


@pytest.mark.parametrize("port", [8848, 8849, 8850])
def test_the_procfile_node_configs(monkeypatch, port):
    monkeypatch.chdir(REPO)
    settings = load_settings({"config": f"config/node-{port}.toml"}, {})
    members = ("127.0.0.1:8848", "127.0.0.1:8849", "127.0.0.1:8850")
    # A cluster refuses to start without a secret: the loopback example carries a dev-only one.
    assert settings == Settings(
        port=port,
        members=members,
        cluster_secret="dev-only-loopback-cluster-secret",
        data_dir=Path(f"data/node-{port}"),
        raft_port=port - 1000,
    )
    assert "DEV ONLY" in (CONFIG / f"node-{port}.toml").read_text()
    assert settings.self_address in settings.members
    assert not settings.standalone


def test_every_file_in_config_loads(monkeypatch):
    monkeypatch.chdir(REPO)
    for path in sorted(CONFIG.glob("*.toml")):
        load_settings({"config": str(path.relative_to(REPO))}, {})
    for path in sorted(CONFIG.glob("*.conf")):
        assert parse_cluster_conf(path.read_text())


def test_ipv6_member_hosts_are_valid_addresses():
    (member,) = parse_members(["[2001:db8::1]:1"], "members")
    assert ipaddress.ip_address(member[1 : member.index("]")]) == ipaddress.ip_address("2001:db8::1")


# -- Raft ports ------------------------------------------------------------------------------


def test_a_member_entry_may_carry_its_raft_port_as_nacos_writes_it():
    settings = load({"members": "127.0.0.1:8848?raft_port=9001,127.0.0.1:8849,127.0.0.1", "port": "8849"})
    assert settings.members == ("127.0.0.1:8848", "127.0.0.1:8849")
    assert settings.raft_address_of("127.0.0.1:8848") == "127.0.0.1:9001"
    assert settings.raft_address_of("127.0.0.1:8849") == "127.0.0.1:7849"  # port - 1000, as Nacos


def test_this_members_raft_port_setting_wins_for_itself():
    settings = load({"members": "127.0.0.1:8848,127.0.0.1:8849?raft_port=9002", "port": "8849", "raft_port": "9100"})
    assert settings.raft_address_of("127.0.0.1:8849") == "127.0.0.1:9100"
    assert settings.raft_address_of("127.0.0.1:8848") == "127.0.0.1:7848"


@pytest.mark.parametrize("entry", ["127.0.0.1:8848?raft=1", "127.0.0.1:8848?raft_port=", "127.0.0.1:8848?raft_port=0",
                                   "127.0.0.1:8848?raft_port=x"])
def test_a_bad_raft_port_entry_is_refused_naming_it(entry):
    with pytest.raises(SettingsError, match="members"):
        load({"members": entry})


def test_cluster_conf_lines_may_carry_raft_ports():
    members, raft_ports = parse_cluster_conf_entries("127.0.0.1:8848?raft_port=7001  # one\n127.0.0.1:8849\n")
    assert members == ("127.0.0.1:8848", "127.0.0.1:8849") and raft_ports == (("127.0.0.1:8848", 7001),)
