"""Node configuration: one frozen ``Config`` built from four layers.

Precedence, lowest to highest::

    built-in defaults  <  YAML file (--config)  <  environment BEAVER_VAULT_<NAME>  <  command-line flags

Every layer uses the same snake_case setting names (``http_port`` in YAML,
``BEAVER_VAULT_HTTP_PORT`` in the environment, ``--http-port`` / ``-http-port`` on the
command line). Anything unknown or mistyped is a ``ConfigError`` that names where the bad
value came from and which setting it was meant for; nothing is silently ignored.

This module is pure apart from reading the one YAML file it is given: the environment is
passed in as a mapping, so tests never touch ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ENV_PREFIX = "BEAVER_VAULT_"
# Variables of the client commands (``beaver-vault get``, ...): not server settings, never an error.
CLIENT_ENV = (
    "BEAVER_VAULT_ENDPOINTS",
    "BEAVER_VAULT_CACERT",
    "BEAVER_VAULT_USER",
    "BEAVER_VAULT_PASSWORD",
    "BEAVER_VAULT_TOKEN",
)
# The first admin's password for bootstrap (read by ``auth_setup``, never a setting: a setting
# is printed by --print-config).
ADMIN_PASSWORD_ENV = ENV_PREFIX + "ADMIN_PASSWORD"
# Settings whose value is a secret: never printed.
SECRET_SETTINGS = frozenset({"join_token"})
# Not a setting, but an accepted variable: where to find the YAML file.
CONFIG_FILE_ENV = ENV_PREFIX + "CONFIG"

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
_NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})


class ConfigError(ValueError):
    """A setting is unknown, mistyped, missing or inconsistent. The message is for humans."""


@dataclass(frozen=True, slots=True)
class Config:
    """Every setting of one node, fully resolved (no ``None`` left where a default is derived)."""

    node_id: str
    data_dir: Path  # default: ./data/<node_id>
    bind_host: str = "127.0.0.1"  # the HTTP and raft listeners bind here
    http_port: int = 8000
    raft_port: int = 7000
    # The pipelined client protocol (docs/protocol.md): 0 = any free port (advertised in
    # GET /api/v1/status as pipelined_address, which is how clients find it); -1 = off.
    client_port: int = 0
    client_max_in_flight: int = 1024  # pipelined requests in flight per connection; 429 beyond
    client_connections_per_client: int = 64  # pipelined connections per client address
    advertise_host: str = "127.0.0.1"  # what other nodes and clients are told; default: bind_host
    join: str | None = None  # URL of any cluster member: ask to be added at start-up
    join_timeout_s: float = 120.0  # give up asking to be joined after this long (0: never give up)
    join_wait_s: float = 1800.0  # the leader keeps a join open this long while the node catches up
    tick_ms: int = 50
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    max_pending: int = 10_000
    snapshot_threshold: int = 10_000
    # Storage work (log appends and fsyncs, applying, compaction, snapshot installs) on a worker
    # thread with its own SQLite connection; false: on the event loop (the old way).
    storage_thread: bool = True
    # The in-memory Raft log keeps at most about this many bytes of the most recent entries;
    # older ones are read back from the database when a follower needs them.
    log_cache_bytes: int = 16 * 1024 * 1024
    snapshot_threshold_bytes: int = 32 * 1024 * 1024
    peer_queue_max: int = 1024  # outbound raft frames queued per peer before dropping
    max_key_bytes: int = 1024
    max_body_bytes: int = 1024 * 1024
    max_json_depth: int = 64
    request_timeout_s: float = 5.0
    forward_timeout_s: float = 10.0  # a forwarded request's whole budget (longer than the leader's own)
    shutdown_timeout_s: float = 3.0  # graceful HTTP shutdown before in-flight requests are cancelled
    max_url_bytes: int = 8 * 1024  # request target (path + query); 414 beyond
    max_header_bytes: int = 8 * 1024  # the request's whole header block; 431 beyond
    body_timeout_s: float = 5.0  # a request body must arrive within this time; 408 beyond
    client_rate_per_s: float = 5_000.0  # HTTP requests per second per client address; 0: unlimited
    client_burst: int = 10_000  # requests a client may send at once before its rate applies
    watchers_per_client: int = 64  # open watches per client address; 429 beyond
    watch_buffer_bytes: int = 8 * 1024 * 1024  # pending event bytes per watcher before it is dropped
    # A membership change's own deadline; a learner gets it plus its data at the minimum rate.
    learner_timeout_s: float = 30.0
    learner_min_rate_bytes_per_s: int = 1024 * 1024
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one object per line (beaver_vault.logfmt)
    seed: int | None = None  # election-timeout and backoff randomness; None: from the OS
    # Security (beaver_vault.transport.tls, cli_certs): TLS on the HTTP port and mutual TLS
    # between nodes when all three files are given.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    http_client_auth: str = "none"  # none | optional | required: HTTP client certificates (CA: tls_ca_file)
    insecure: bool = False  # allow listening beyond loopback without authentication (and maybe TLS)
    # Authentication and authorisation (api/auth_guard.py, kv/auth.py, auth_setup.py).
    auth_enabled: bool = False
    auth_admin_password_file: Path | None = None  # first admin's password (bootstrap; or BEAVER_VAULT_ADMIN_PASSWORD)
    auth_health_public: bool = True  # /health and /ready answer without credentials
    auth_metrics_public: bool = False  # /metrics answers without credentials
    auth_failures_burst: int = 10  # failed logins a client address may make at once ...
    auth_failures_per_s: float = 1.0  # ... and then per second (429 beyond)
    join_token: str | None = field(default=None, repr=False)  # presented when joining (--join)
    # Inbound raft connections (transport.tcp): bounds against slot and memory exhaustion.
    peer_max_inbound: int = 64
    peer_max_inbound_per_host: int = 16
    peer_idle_timeout_s: float = 60.0
    peer_partial_budget_bytes: int = 64 * 1024 * 1024

    @property
    def raft_address(self) -> str:
        """The advertised ``host:port`` of the raft listener."""
        return f"{_host_for_url(self.advertise_host)}:{self.raft_port}"

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def http_address(self) -> str:
        """The advertised base URL of the HTTP API."""
        scheme = "https" if self.tls_enabled else "http"
        return f"{scheme}://{_host_for_url(self.advertise_host)}:{self.http_port}"

    @property
    def http_bind(self) -> str:
        """The ``host:port`` the HTTP server binds (hypercorn's ``bind`` syntax)."""
        return f"{_host_for_url(self.bind_host)}:{self.http_port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "node.db"


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


# --- value parsers ------------------------------------------------------------------------------
#
# Each parser takes the raw value (a string from the environment or a flag; any YAML scalar from
# the file) and returns the typed value or raises ValueError with a short reason.


def _parse_str(raw: object) -> str:
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"expected a string, got {_describe(raw)}")
    return str(raw)


def _parse_int(raw: object) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"expected an integer, got {_describe(raw)}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        text = raw.strip().replace("_", "")
        if re.fullmatch(r"[+-]?[0-9]+", text):
            return int(text)
    raise ValueError(f"expected an integer, got {_describe(raw)}")


def _parse_float(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError(f"expected a number, got {_describe(raw)}")
    value: float
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {_describe(raw)}") from None
    else:
        raise ValueError(f"expected a number, got {_describe(raw)}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {_describe(raw)}")
    return value


def _int_in(low: int, high: int | None = None) -> Callable[[object], int]:
    def parse(raw: object) -> int:
        value = _parse_int(raw)
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"expected an integer {bound}, got {value}")
        return value

    return parse


def _float_over(low: float, *, inclusive: bool = False) -> Callable[[object], float]:
    def parse(raw: object) -> float:
        value = _parse_float(raw)
        if value < low or (value == low and not inclusive):
            cmp = "at least" if inclusive else "greater than"
            raise ValueError(f"expected a number {cmp} {low:g}, got {value:g}")
        return value

    return parse


def _parse_port(raw: object) -> int:
    try:
        return _int_in(1, 65535)(raw)
    except ValueError as e:
        raise ValueError(f"{e} (a TCP port is 1-65535)") from None


def _parse_node_id(raw: object) -> str:
    value = _parse_str(raw)
    if not _NODE_ID_RE.match(value):
        raise ValueError(
            f"expected 1-64 characters of letters, digits, '.', '_' or '-' (starting with a letter or digit), "
            f"got {_describe(raw)}"
        )
    return value


def _parse_host(raw: object) -> str:
    value = _parse_str(raw)
    if not value or any(c.isspace() or c in "/?#@" for c in value):
        raise ValueError(f"expected a host name or IP address, got {_describe(raw)}")
    return value.removeprefix("[").removesuffix("]")


def _parse_path(raw: object) -> Path:
    value = _parse_str(raw)
    if not value:
        raise ValueError("expected a directory path, got an empty string")
    return Path(value).expanduser()


def _parse_join(raw: object) -> str | None:
    value = _parse_str(raw)
    if not value:
        return None  # an empty BEAVER_VAULT_JOIN= or --join "" means: do not join
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL of a cluster member, got {_describe(raw)}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ValueError(f"the URL has an invalid port: {_describe(raw)}") from None
    return value.rstrip("/")


def _parse_log_level(raw: object) -> str:
    value = _parse_str(raw).upper()
    if value == "WARN":
        value = "WARNING"
    if value not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {_describe(raw)}")
    return value


def _parse_log_format(raw: object) -> str:
    value = _parse_str(raw).lower()
    if value not in LOG_FORMATS:
        raise ValueError(f"expected one of {', '.join(LOG_FORMATS)}, got {_describe(raw)}")
    return value


def _parse_seed(raw: object) -> int | None:
    if isinstance(raw, str) and raw.strip().lower() in ("", "none", "random"):
        return None
    return _int_in(0)(raw)


def _parse_file(raw: object) -> Path | None:
    value = _parse_str(raw)
    return Path(value).expanduser() if value else None


def _parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(raw, str) and raw.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {_describe(raw)}")


CLIENT_AUTH_MODES = ("none", "optional", "required")


def _parse_client_auth(raw: object) -> str:
    value = _parse_str(raw).lower()
    if value not in CLIENT_AUTH_MODES:
        raise ValueError(f"expected one of {', '.join(CLIENT_AUTH_MODES)}, got {_describe(raw)}")
    return value


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost``: nothing beyond this machine can connect."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _describe(raw: object) -> str:
    if isinstance(raw, str):
        return repr(raw)
    return f"{type(raw).__name__} {raw!r}"


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    parse: Callable[[object], Any]
    help: str
    nullable: bool = False  # may be explicitly null in YAML
    const: str | None = None  # the value of the bare flag (``--insecure``), if it may be given alone

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: tuple[Setting, ...] = (
    Setting("node_id", _parse_node_id, "this node's id, unique in the cluster (required)"),
    Setting("data_dir", _parse_path, "directory of this node's files (default: ./data/<node_id>)", nullable=True),
    Setting("bind_host", _parse_host, "address the HTTP and raft listeners bind (default: 127.0.0.1)"),
    Setting("http_port", _parse_port, "HTTP API port (default: 8000)"),
    Setting("raft_port", _parse_port, "raft (node-to-node TCP) port (default: 7000)"),
    Setting(
        "client_port",
        _int_in(-1, 65535),
        "pipelined client protocol port (default: 0, any free port, advertised in /api/v1/status; -1: off)",
    ),
    Setting("client_max_in_flight", _int_in(1, 1_000_000), "pipelined requests in flight per connection (default: 1024)"),
    Setting(
        "client_connections_per_client",
        _int_in(1, 100_000),
        "pipelined connections from one client address (default: 64)",
    ),
    Setting(
        "advertise_host",
        _parse_host,
        "host other nodes and clients use to reach this node (default: bind_host; 127.0.0.1 if bind_host is a wildcard)",
        nullable=True,
    ),
    Setting("join", _parse_join, "URL of a cluster member to ask to add this node at start-up", nullable=True),
    Setting("join_timeout_s", _float_over(0.0, inclusive=True), "give up joining after this many seconds (0: never)"),
    Setting(
        "join_wait_s",
        _float_over(0.0),
        "how long the leader keeps a join request open while the new node catches up, forwarded or "
        "not (default: 1800, enough for 1 GB at learner_min_rate_bytes_per_s)",
    ),
    Setting("tick_ms", _int_in(1, 60_000), "raft tick length in milliseconds (default: 50)"),
    Setting(
        "election_ticks", _int_in(2, 10_000), "election timeout in ticks, randomised up to twice this (default: 10)"
    ),
    Setting("heartbeat_ticks", _int_in(1, 10_000), "leader heartbeat interval in ticks (default: 2)"),
    Setting("max_pending", _int_in(1), "writes and reads waiting for an outcome before Overloaded (default: 10000)"),
    Setting(
        "snapshot_threshold",
        _int_in(10, 10_000_000),
        "log entries kept before the log is compacted into a snapshot (default: 10000)",
    ),
    Setting(
        "storage_thread",
        _parse_bool,
        "do storage work (log fsyncs, applying, compaction, snapshot installs) on a worker thread (default: true)",
    ),
    Setting(
        "log_cache_bytes",
        _int_in(0),
        "bytes of recent Raft log entries kept in memory; older ones are read from disk (default: 16777216)",
    ),
    Setting(
        "snapshot_threshold_bytes",
        _int_in(1024),
        "bytes of log entry data kept before the log is compacted into a snapshot (default: 33554432)",
    ),
    Setting("peer_queue_max", _int_in(1), "raft frames queued per peer before dropping (default: 1024)"),
    Setting("max_key_bytes", _int_in(1), "longest key in UTF-8 bytes (default: 1024)"),
    Setting("max_body_bytes", _int_in(1), "largest request body in bytes (default: 1048576)"),
    Setting("max_json_depth", _int_in(1, 10_000), "deepest JSON nesting accepted (default: 64)"),
    Setting("request_timeout_s", _float_over(0.0), "how long a request waits for its outcome (default: 5)"),
    Setting("forward_timeout_s", _float_over(0.0), "how long a follower waits for the leader's answer (default: 10)"),
    Setting("shutdown_timeout_s", _float_over(0.0, inclusive=True), "graceful HTTP shutdown time (default: 3)"),
    Setting("max_url_bytes", _int_in(256), "longest request URL (path and query) in bytes; 414 beyond (default: 8192)"),
    Setting("max_header_bytes", _int_in(1024), "largest request header block in bytes; 431 beyond (default: 8192)"),
    Setting("body_timeout_s", _float_over(0.0), "seconds a request body may take to arrive; 408 beyond (default: 5)"),
    Setting(
        "client_rate_per_s",
        _float_over(0.0, inclusive=True),
        "HTTP requests per second per client address, 429 beyond; 0: unlimited (default: 5000)",
    ),
    Setting("client_burst", _int_in(1), "requests a client may send in a burst before its rate applies (default: 10000)"),
    Setting("watchers_per_client", _int_in(1), "open watches per client address; 429 beyond (default: 64)"),
    Setting(
        "watch_buffer_bytes",
        _int_in(1024),
        "bytes of events a watcher may have pending before it is disconnected (default: 8388608)",
    ),
    Setting(
        "learner_timeout_s",
        _float_over(0.0),
        "a membership change's deadline; a joining learner that has not caught up within it, plus "
        "its data at learner_min_rate_bytes_per_s, is removed again (default: 30)",
    ),
    Setting(
        "learner_min_rate_bytes_per_s",
        _int_in(1),
        "the slowest catch-up rate a learner's deadline allows for (default: 1048576)",
    ),
    Setting("log_level", _parse_log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL (default: INFO)"),
    Setting("log_format", _parse_log_format, "text (default) or json: one JSON object per log line"),
    Setting("seed", _parse_seed, "integer seed for this node's randomness (default: from the OS)", nullable=True),
    Setting(
        "tls_cert_file",
        _parse_file,
        "this node's certificate (PEM; `beaver-vault certs`): TLS on HTTP, mutual TLS between nodes",
        nullable=True,
    ),
    Setting("tls_key_file", _parse_file, "the private key of tls_cert_file (PEM)", nullable=True),
    Setting("tls_ca_file", _parse_file, "the cluster's CA certificate (PEM): verifies nodes and clients", nullable=True),
    Setting(
        "http_client_auth",
        _parse_client_auth,
        "HTTP client certificates (verified by tls_ca_file): none, optional or required (default: none)",
    ),
    Setting(
        "insecure",
        _parse_bool,
        "allow a bind_host beyond loopback without TLS and authentication (default: false)",
        const="true",
    ),
    Setting(
        "auth_enabled",
        _parse_bool,
        "require credentials (HTTP Basic or a Bearer token) and check roles on every request (default: false)",
        const="true",
    ),
    Setting(
        "auth_admin_password_file",
        _parse_file,
        "file whose first line is the password of the first admin, created once if the cluster has no "
        "user (or BEAVER_VAULT_ADMIN_PASSWORD)",
        nullable=True,
    ),
    Setting("auth_health_public", _parse_bool, "/health and /ready need no credentials (default: true)"),
    Setting("auth_metrics_public", _parse_bool, "/metrics needs no credentials (default: false)"),
    Setting("auth_failures_burst", _int_in(1), "failed logins a client address may make at once; 429 beyond (default: 10)"),
    Setting("auth_failures_per_s", _float_over(0.0), "failed logins per second per client address after the burst (default: 1)"),
    Setting(
        "join_token",
        _parse_str,
        "join token (`beaver-vault auth join-token create`) presented with --join when the cluster has auth on",
        nullable=True,
    ),
    Setting("peer_max_inbound", _int_in(1, 100_000), "inbound raft connections at once (default: 64)"),
    Setting(
        "peer_max_inbound_per_host", _int_in(1, 100_000), "inbound raft connections from one address (default: 16)"
    ),
    Setting("peer_idle_timeout_s", _float_over(0.0), "close an inbound raft connection silent this long (default: 60)"),
    Setting(
        "peer_partial_budget_bytes",
        _int_in(1024),
        "bytes of incomplete inbound raft frames held at once, over all connections (default: 67108864)",
    ),
)
SETTINGS_BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}

# Keep the table and the dataclass in step (a cheap import-time check, not an assert).
if {s.name for s in SETTINGS} != {f.name for f in fields(Config)}:  # pragma: no cover
    raise RuntimeError("config.SETTINGS and Config fields disagree")


# --- loading ------------------------------------------------------------------------------------


def _parse_in(setting: Setting, raw: object, source: str) -> Any:
    if raw is None:
        if setting.nullable:
            return None
        raise ConfigError(f"{source}: setting {setting.name!r} cannot be empty (null)")
    try:
        return setting.parse(raw)
    except ValueError as e:
        raise ConfigError(f"{source}: setting {setting.name!r}: {e}") from None


def read_yaml(path: Path) -> dict[str, object]:
    """Read the YAML config file: a top-level mapping of setting names to scalar values."""
    source = f"config file {str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{source}: cannot read: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: invalid YAML: {e}") from None
    if data is None:
        return {}  # an empty file is an empty mapping
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level, got {type(data).__name__}")
    result: dict[str, object] = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in SETTINGS_BY_NAME:
            raise ConfigError(f"{source}: unknown setting {key!r}{_suggest(str(key))}")
        if isinstance(value, dict | list):
            raise ConfigError(f"{source}: setting {key!r}: expected a single value, got {type(value).__name__}")
        result[key] = value
    return result


def _suggest(name: str) -> str:
    normalized = name.strip().lower().replace("-", "_")
    if normalized in SETTINGS_BY_NAME and normalized != name:
        return f" (did you mean {normalized!r}?)"
    return f" (known settings: {', '.join(SETTINGS_BY_NAME)})"


def config_file_from(flags: Mapping[str, object], env: Mapping[str, str]) -> Path | None:
    """Where the YAML file is: ``--config`` wins over ``BEAVER_VAULT_CONFIG``; ``None``: no file."""
    raw = flags.get("config")
    if raw is None:
        raw = env.get(CONFIG_FILE_ENV)
    if raw is None or str(raw).strip() == "":
        return None
    return Path(str(raw)).expanduser()


def load_config(
    *,
    flags: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Config:
    """Build the ``Config`` from defaults, ``config_file``, ``env`` and ``flags`` (in rising precedence).

    ``flags`` maps setting names to the raw values given on the command line (absent or ``None``:
    not given). ``env`` is the process environment (only ``BEAVER_VAULT_*`` names are looked at).
    Raises ``ConfigError``.
    """
    flags = flags or {}
    env = env or {}
    raw: dict[str, tuple[object, str]] = {}  # name -> (raw value, source description)

    if config_file is not None:
        for name, value in read_yaml(config_file).items():
            raw[name] = (value, f"config file {str(config_file)!r}")

    for var, value in sorted(env.items()):
        if not var.startswith(ENV_PREFIX) or var in (CONFIG_FILE_ENV, ADMIN_PASSWORD_ENV, *CLIENT_ENV):
            continue
        name = var[len(ENV_PREFIX) :].lower()
        if var[len(ENV_PREFIX) :] != name.upper() or name not in SETTINGS_BY_NAME:
            raise ConfigError(f"environment: unknown variable {var}{_suggest_env(var)}")
        raw[name] = (value, f"environment {var}")

    for name, value in flags.items():
        if name == "config" or value is None:
            continue
        if name not in SETTINGS_BY_NAME:
            raise ConfigError(f"command line: unknown setting {name!r}")
        raw[name] = (value, f"command line {SETTINGS_BY_NAME[name].flag}")

    values: dict[str, Any] = {}
    for name, (value, source) in raw.items():
        values[name] = _parse_in(SETTINGS_BY_NAME[name], value, source)
    return _resolve(values, raw)


def _suggest_env(var: str) -> str:
    known = ", ".join(s.env_var for s in SETTINGS)
    return f" (known: {known}, {CONFIG_FILE_ENV})"


def _resolve(values: dict[str, Any], raw: Mapping[str, tuple[object, str]]) -> Config:
    """Fill the derived defaults and check the settings that constrain each other."""

    def src(name: str) -> str:
        return raw[name][1] if name in raw else "default"

    node_id = values.get("node_id")
    if node_id is None:
        raise ConfigError(
            "setting 'node_id' is required: give --node-id (or -node-id), BEAVER_VAULT_NODE_ID, "
            "or node_id in the config file"
        )
    if values.get("data_dir") is None:
        values["data_dir"] = Path("data") / node_id
    bind_host = values.get("bind_host", "127.0.0.1")
    if values.get("advertise_host") is None:
        values["advertise_host"] = "127.0.0.1" if bind_host in _WILDCARD_HOSTS else bind_host
    cfg = Config(**values)

    if cfg.http_port == cfg.raft_port:
        raise ConfigError(
            f"http_port ({src('http_port')}) and raft_port ({src('raft_port')}) are both {cfg.http_port}: "
            "they must differ"
        )
    if cfg.client_port > 0 and cfg.client_port in (cfg.http_port, cfg.raft_port):
        raise ConfigError(f"client_port ({src('client_port')}) must differ from http_port and raft_port")
    if cfg.heartbeat_ticks >= cfg.election_ticks:
        raise ConfigError(
            f"heartbeat_ticks ({cfg.heartbeat_ticks}, {src('heartbeat_ticks')}) must be less than "
            f"election_ticks ({cfg.election_ticks}, {src('election_ticks')})"
        )
    tls_files = {"tls_cert_file": cfg.tls_cert_file, "tls_key_file": cfg.tls_key_file, "tls_ca_file": cfg.tls_ca_file}
    given = [name for name, path in tls_files.items() if path is not None]
    if given and len(given) != len(tls_files):
        missing = [name for name in tls_files if name not in given]
        raise ConfigError(
            f"TLS needs tls_cert_file, tls_key_file and tls_ca_file together: {', '.join(given)} given "
            f"({', '.join(src(n) for n in given)}), {', '.join(missing)} missing"
        )
    if cfg.http_client_auth != "none" and not cfg.tls_enabled:
        raise ConfigError(f"http_client_auth {cfg.http_client_auth!r} ({src('http_client_auth')}) needs TLS files")
    if not is_loopback_host(cfg.bind_host) and not cfg.insecure and not (cfg.tls_enabled and cfg.auth_enabled):
        missing = [
            what
            for what, ok in (
                ("TLS (--tls-cert-file, --tls-key-file, --tls-ca-file)", cfg.tls_enabled),
                ("authentication (--auth-enabled)", cfg.auth_enabled),
            )
            if not ok
        ]
        raise ConfigError(
            f"bind_host {cfg.bind_host!r} ({src('bind_host')}) listens beyond loopback. Beyond loopback a node "
            f"needs TLS and authentication; missing: {' and '.join(missing)}. Give them, or start with "
            "--insecure (BEAVER_VAULT_INSECURE=true) to accept that whoever reaches its ports can read, "
            "write or change the cluster"
        )
    if cfg.advertise_host in _WILDCARD_HOSTS:
        raise ConfigError(
            f"advertise_host ({src('advertise_host')}) is the wildcard address {cfg.advertise_host!r}: "
            "other nodes cannot connect to it; give a reachable address"
        )
    return cfg
