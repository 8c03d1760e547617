"""Configuration: defaults < YAML file < environment < flags, and every way a setting can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from beaver_vault.config import (
    CONFIG_FILE_ENV,
    SETTINGS,
    Config,
    ConfigError,
    config_file_from,
    load_config,
    read_yaml,
)


def write(tmp_path: Path, text: str, name: str = "beaver.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults and derived values ----------------------------------------------------------------


def test_defaults_need_only_a_node_id() -> None:
    cfg = load_config(flags={"node_id": "node1"})
    assert cfg == Config(node_id="node1", data_dir=Path("data/node1"))
    assert cfg.bind_host == "127.0.0.1"
    assert (cfg.http_port, cfg.raft_port) == (8000, 7000)
    assert cfg.advertise_host == "127.0.0.1"
    assert cfg.join is None
    assert cfg.max_key_bytes == 1024
    assert cfg.max_body_bytes == 1024 * 1024
    assert cfg.log_level == "INFO"
    assert cfg.seed is None


def test_derived_addresses() -> None:
    cfg = load_config(flags={"node_id": "node2", "http_port": "8001", "raft_port": "7001"})
    assert cfg.raft_address == "127.0.0.1:7001"
    assert cfg.http_address == "http://127.0.0.1:8001"
    assert cfg.http_bind == "127.0.0.1:8001"
    assert cfg.db_path == Path("data/node2/node.db")


def test_data_dir_defaults_per_node_so_nodes_never_share_files() -> None:
    a = load_config(flags={"node_id": "node1"})
    b = load_config(flags={"node_id": "node2", "http_port": "8001", "raft_port": "7001"})
    assert a.data_dir != b.data_dir


def test_advertise_host_follows_bind_host() -> None:
    cfg = load_config(flags={"node_id": "n", "bind_host": "10.0.0.5", "insecure": "true"})
    assert cfg.advertise_host == "10.0.0.5"
    assert cfg.raft_address == "10.0.0.5:7000"


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])
def test_advertise_host_is_loopback_when_binding_a_wildcard(wildcard: str) -> None:
    cfg = load_config(flags={"node_id": "n", "bind_host": wildcard, "insecure": "true"})
    assert cfg.advertise_host == "127.0.0.1"
    assert cfg.http_address == "http://127.0.0.1:8000"


def test_explicit_advertise_host_wins() -> None:
    flags = {"node_id": "n", "bind_host": "0.0.0.0", "advertise_host": "node-a.example", "insecure": "true"}
    cfg = load_config(flags=flags)
    assert cfg.http_address == "http://node-a.example:8000"


def test_ipv6_hosts_are_bracketed_in_addresses() -> None:
    cfg = load_config(flags={"node_id": "n", "bind_host": "::1"})
    assert cfg.raft_address == "[::1]:7000"
    assert cfg.http_address == "http://[::1]:8000"
    assert cfg.http_bind == "[::1]:8000"


def test_config_is_frozen() -> None:
    cfg = load_config(flags={"node_id": "n"})
    with pytest.raises(AttributeError):
        cfg.http_port = 1  # type: ignore[misc]


# --- precedence ----------------------------------------------------------------------------------


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "node_id: from-file\nhttp_port: 8101\nraft_port: 7101\ntick_ms: 20\nlog_level: debug\n",
    )
    env = {"BEAVER_VAULT_HTTP_PORT": "8201", "BEAVER_VAULT_RAFT_PORT": "7201"}
    flags = {"raft_port": "7301"}
    cfg = load_config(flags=flags, env=env, config_file=path)
    assert cfg.node_id == "from-file"  # only in the file
    assert cfg.tick_ms == 20  # only in the file
    assert cfg.log_level == "DEBUG"
    assert cfg.http_port == 8201  # env beats the file
    assert cfg.raft_port == 7301  # flag beats env and file
    assert cfg.election_ticks == 10  # nobody set it: default


def test_env_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, "node_id: a\n")
    cfg = load_config(env={"BEAVER_VAULT_NODE_ID": "b"}, config_file=path)
    assert cfg.node_id == "b"
    assert cfg.data_dir == Path("data/b")  # derived from the winning node id


def test_flag_overrides_env() -> None:
    cfg = load_config(flags={"node_id": "flag"}, env={"BEAVER_VAULT_NODE_ID": "env"})
    assert cfg.node_id == "flag"


def test_flags_given_as_none_are_not_given() -> None:
    cfg = load_config(flags={"node_id": None, "http_port": None}, env={"BEAVER_VAULT_NODE_ID": "env"})
    assert cfg.node_id == "env"
    assert cfg.http_port == 8000


def test_other_environment_variables_are_ignored() -> None:
    cfg = load_config(flags={"node_id": "n"}, env={"PATH": "/bin", "HTTP_PORT": "1", "BEAVER_VAULTX": "1"})
    assert cfg.http_port == 8000


def test_every_setting_can_come_from_every_source(tmp_path: Path) -> None:
    # One value per setting that differs from its default and is valid alone.
    values = {
        "node_id": "x1",
        "data_dir": str(tmp_path / "d"),
        "bind_host": "127.0.0.2",
        "http_port": "8100",
        "raft_port": "7100",
        "client_port": "9100",
        "client_max_in_flight": "16",
        "client_connections_per_client": "4",
        "advertise_host": "127.0.0.3",
        "join": "http://127.0.0.1:8000",
        "join_timeout_s": "7.5",
        "join_wait_s": "90",
        "tick_ms": "25",
        "election_ticks": "20",
        "heartbeat_ticks": "3",
        "max_pending": "99",
        "snapshot_threshold": "500",
        "storage_thread": "false",
        "log_cache_bytes": "1048576",
        "snapshot_threshold_bytes": "65536",
        "peer_queue_max": "64",
        "max_key_bytes": "10",
        "max_body_bytes": "2048",
        "max_json_depth": "8",
        "request_timeout_s": "1.5",
        "forward_timeout_s": "2.5",
        "shutdown_timeout_s": "0",
        "max_url_bytes": "4096",
        "max_header_bytes": "4096",
        "body_timeout_s": "2.5",
        "client_rate_per_s": "100",
        "client_burst": "200",
        "watchers_per_client": "8",
        "watch_buffer_bytes": "65536",
        "learner_timeout_s": "4.5",
        "learner_min_rate_bytes_per_s": "1000",
        "log_level": "WARNING",
        "log_format": "json",
        "seed": "42",
        "tls_cert_file": "n.pem",
        "tls_key_file": "n-key.pem",
        "tls_ca_file": "ca.pem",
        "http_client_auth": "optional",
        "insecure": "true",
        "peer_max_inbound": "9",
        "peer_max_inbound_per_host": "4",
        "peer_idle_timeout_s": "30",
        "peer_partial_budget_bytes": "1048576",
        "auth_enabled": "true",
        "auth_admin_password_file": "admin-password.txt",
        "auth_health_public": "false",
        "auth_metrics_public": "true",
        "join_token": "bvj_example",
        "auth_failures_burst": "20",
        "auth_failures_per_s": "2.5",
    }
    assert set(values) == {s.name for s in SETTINGS}
    from_flags = load_config(flags=values)
    from_env = load_config(env={f"BEAVER_VAULT_{k.upper()}": v for k, v in values.items()})
    path = write(tmp_path, "".join(f"{k}: {v!r}\n" for k, v in values.items()))
    from_file = load_config(config_file=path)
    assert from_flags == from_env == from_file
    assert from_flags.http_port == 8100
    assert from_flags.join_timeout_s == 7.5
    assert (from_flags.learner_timeout_s, from_flags.learner_min_rate_bytes_per_s) == (4.5, 1000)
    assert from_flags.seed == 42
    assert from_flags.data_dir == tmp_path / "d"


def test_yaml_native_types(tmp_path: Path) -> None:
    path = write(tmp_path, "node_id: n\nhttp_port: 8005\nrequest_timeout_s: 2\nseed: null\ndata_dir: null\n")
    cfg = load_config(config_file=path)
    assert cfg.http_port == 8005
    assert cfg.request_timeout_s == 2.0
    assert cfg.seed is None
    assert cfg.data_dir == Path("data/n")


def test_empty_yaml_file_is_no_settings(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing here\n")
    assert read_yaml(path) == {}
    assert load_config(flags={"node_id": "n"}, config_file=path).http_port == 8000


def test_empty_join_means_do_not_join() -> None:
    cfg = load_config(flags={"node_id": "n"}, env={"BEAVER_VAULT_JOIN": ""})
    assert cfg.join is None


def test_join_url_loses_its_trailing_slash() -> None:
    cfg = load_config(flags={"node_id": "n", "join": "http://127.0.0.1:8000/"})
    assert cfg.join == "http://127.0.0.1:8000"


def test_config_file_location_flag_beats_env(tmp_path: Path) -> None:
    assert config_file_from({}, {}) is None
    assert config_file_from({"config": None}, {CONFIG_FILE_ENV: "/e.yaml"}) == Path("/e.yaml")
    assert config_file_from({"config": "/f.yaml"}, {CONFIG_FILE_ENV: "/e.yaml"}) == Path("/f.yaml")
    assert config_file_from({}, {CONFIG_FILE_ENV: ""}) is None


def test_config_env_var_is_not_an_unknown_setting(tmp_path: Path) -> None:
    cfg = load_config(flags={"node_id": "n"}, env={CONFIG_FILE_ENV: str(tmp_path / "x.yaml")})
    assert cfg.node_id == "n"


# --- errors --------------------------------------------------------------------------------------


def error_of(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(**kwargs)  # type: ignore[arg-type]
    return str(info.value)


def test_node_id_is_required() -> None:
    msg = error_of()
    assert "node_id" in msg and "required" in msg
    assert "--node-id" in msg and "BEAVER_VAULT_NODE_ID" in msg


@pytest.mark.parametrize("bad", ["", "a/b", "../x", "-lead", "x" * 65, "with space"])
def test_bad_node_id(bad: str) -> None:
    msg = error_of(flags={"node_id": bad})
    assert "command line --node-id" in msg and "'node_id'" in msg


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("abc", "expected an integer"), ("0", "1-65535"), ("65536", "1-65535"), ("-1", "1-65535"), ("80.5", "integer")],
)
def test_bad_port_from_a_flag(value: str, fragment: str) -> None:
    msg = error_of(flags={"node_id": "n", "http_port": value})
    assert msg.startswith("command line --http-port: setting 'http_port'")
    assert fragment in msg
    assert repr(value) in msg or value in msg


def test_bad_port_from_env_names_the_variable() -> None:
    msg = error_of(flags={"node_id": "n"}, env={"BEAVER_VAULT_RAFT_PORT": "abc"})
    assert msg.startswith("environment BEAVER_VAULT_RAFT_PORT: setting 'raft_port'")
    assert "'abc'" in msg


def test_bad_port_from_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "node_id: n\nhttp_port: 70000\n")
    msg = error_of(config_file=path)
    assert msg.startswith(f"config file {str(path)!r}: setting 'http_port'")
    assert "70000" in msg


def test_boolean_is_not_an_integer(tmp_path: Path) -> None:
    path = write(tmp_path, "node_id: n\ntick_ms: true\n")
    assert "expected an integer" in error_of(config_file=path)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("tick_ms", "0", "between 1 and"),
        ("election_ticks", "1", "between 2 and"),
        ("max_key_bytes", "0", "at least 1"),
        ("max_body_bytes", "lots", "expected an integer"),
        ("request_timeout_s", "0", "greater than 0"),
        ("request_timeout_s", "nan", "finite"),
        ("forward_timeout_s", "soon", "expected a number"),
        ("join_timeout_s", "-1", "at least 0"),
        ("log_level", "chatty", "DEBUG, INFO"),
        ("seed", "-3", "at least 0"),
        ("seed", "x", "expected an integer"),
        ("join", "127.0.0.1:8000", "http://"),
        ("join", "ftp://host", "http://"),
        ("join", "http://host:notaport", "invalid port"),
        ("bind_host", "", "host name"),
        ("bind_host", "http://x", "host name"),
        ("data_dir", "", "directory path"),
    ],
)
def test_mistyped_values(name: str, value: str, fragment: str) -> None:
    msg = error_of(flags={"node_id": "n", name: value})
    assert f"setting {name!r}" in msg
    assert fragment in msg


def test_unknown_yaml_key(tmp_path: Path) -> None:
    path = write(tmp_path, "node_id: n\nhttp_prot: 8000\n")
    msg = error_of(config_file=path)
    assert f"config file {str(path)!r}" in msg
    assert "unknown setting 'http_prot'" in msg
    assert "http_port" in msg  # the list of known settings helps spot the typo


def test_yaml_key_with_dashes_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "node-id: n\n")
    assert "did you mean 'node_id'" in error_of(config_file=path)


def test_unknown_env_var() -> None:
    msg = error_of(flags={"node_id": "n"}, env={"BEAVER_VAULT_HTTP_PROT": "8000"})
    assert "environment" in msg and "BEAVER_VAULT_HTTP_PROT" in msg and "unknown" in msg


def test_lowercase_env_var_is_unknown() -> None:
    msg = error_of(flags={"node_id": "n"}, env={"BEAVER_VAULT_http_port": "8000"})
    assert "BEAVER_VAULT_http_port" in msg


def test_unknown_flag_name() -> None:
    assert "unknown setting 'colour'" in error_of(flags={"node_id": "n", "colour": "red"})


def test_yaml_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- node_id\n- n\n")
    msg = error_of(config_file=path)
    assert "expected a mapping" in msg and "list" in msg


def test_yaml_values_must_be_scalars(tmp_path: Path) -> None:
    path = write(tmp_path, "node_id: n\nhttp_port: [8000]\n")
    assert "setting 'http_port': expected a single value" in error_of(config_file=path)


def test_yaml_null_for_a_required_value(tmp_path: Path) -> None:
    path = write(tmp_path, "node_id: n\nhttp_port: null\n")
    assert "setting 'http_port' cannot be empty" in error_of(config_file=path)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "node_id: [unclosed\n")
    assert "invalid YAML" in error_of(config_file=path)


def test_missing_config_file(tmp_path: Path) -> None:
    msg = error_of(flags={"node_id": "n"}, config_file=tmp_path / "nope.yaml")
    assert "nope.yaml" in msg and "not found" in msg


def test_unreadable_config_file(tmp_path: Path) -> None:
    path = tmp_path / "bin.yaml"
    path.write_bytes(b"node_id: \xff\xfe\n")
    assert "cannot read" in error_of(config_file=path)


def test_config_file_that_is_a_directory(tmp_path: Path) -> None:
    assert "cannot read" in error_of(config_file=tmp_path)


def test_http_and_raft_ports_must_differ() -> None:
    msg = error_of(flags={"node_id": "n", "http_port": "7000"})
    assert "http_port" in msg and "raft_port" in msg and "must differ" in msg


def test_heartbeat_must_be_shorter_than_election_timeout() -> None:
    msg = error_of(flags={"node_id": "n", "heartbeat_ticks": "10"})
    assert "heartbeat_ticks" in msg and "election_ticks" in msg


def test_wildcard_advertise_host_is_refused() -> None:
    msg = error_of(flags={"node_id": "n", "advertise_host": "0.0.0.0"})
    assert "advertise_host" in msg and "wildcard" in msg


def test_client_variables_in_the_environment_are_not_server_settings() -> None:
    cfg = load_config(flags={"node_id": "n1"}, env={"BEAVER_VAULT_ENDPOINTS": "http://127.0.0.1:8000"})
    assert cfg.node_id == "n1"


def test_client_port_must_differ_from_the_others_and_minus_one_turns_it_off() -> None:
    msg = error_of(flags={"node_id": "n", "client_port": "8000"})
    assert "client_port" in msg and "must differ" in msg
    assert load_config(flags={"node_id": "n", "client_port": "-1"}, env={}).client_port == -1
    assert load_config(flags={"node_id": "n"}, env={}).client_port == 0  # any free port, advertised
    assert "client_port" in error_of(flags={"node_id": "n", "client_port": "-2"})
