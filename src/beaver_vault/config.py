"""Node configuration: one frozen ``Config`` built from four layers.

Precedence, lowest to highest::

    built-in defaults  <  YAML file (--config)  <  environment BEAVER_VAULT_<NAME>  <  command-line flags

Every layer uses the same snake_case setting names (``http_port`` in YAML,
``BEAVER_VAULT_HTTP_PORT`` in the environment, ``--http-port`` / ``-http-port`` on the
command line). Anything unknown or mistyped is a ``ConfigError`` that names where the bad
value came from and which setting it was meant for; nothing is silently ignored.

This module is pure apart from reading the one YAML file it is given: the environment is
passed in as a mapping, so tests never touch ``os.environ``. It holds ``Config``, the layers'
loading and the checks between settings; the table of settings is ``config_settings.py`` and
the parser of each value ``config_values.py`` (their public names are re-exported here).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from beaver_vault.config_settings import ENV_PREFIX, SETTINGS, SETTINGS_BY_NAME, Setting
from beaver_vault.config_values import (
    CLIENT_AUTH_MODES,
    LOG_FORMATS,
    LOG_LEVELS,
    is_loopback_host,
)

__all__ = [
    "ADMIN_PASSWORD_ENV",
    "CLIENT_AUTH_MODES",
    "CLIENT_ENV",
    "CONFIG_FILE_ENV",
    "ENV_PREFIX",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "SECRET_SETTINGS",
    "SETTINGS",
    "SETTINGS_BY_NAME",
    "Config",
    "ConfigError",
    "Setting",
    "config_file_from",
    "is_loopback_host",
    "load_config",
    "read_yaml",
]

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
