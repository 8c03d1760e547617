"""The table of every setting: its name, parser, help text, and its names in each layer.

One ``Setting`` per field of ``config.Config`` (``config.py`` checks at import that the two
agree): ``node_id`` is ``node_id`` in the YAML file, ``BEAVER_VAULT_NODE_ID`` in the
environment (``env_var``) and ``--node-id`` on the command line (``flag``). The command line
(``cli.py``) and ``--print-config`` (``cli_ops.py``) are built from this table too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from beaver_vault.config_values import (
    float_over,
    int_in,
    parse_bool,
    parse_client_auth,
    parse_file,
    parse_host,
    parse_join,
    parse_log_format,
    parse_log_level,
    parse_node_id,
    parse_path,
    parse_port,
    parse_seed,
    parse_str,
)

ENV_PREFIX = "BEAVER_VAULT_"


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
    Setting("node_id", parse_node_id, "this node's id, unique in the cluster (required)"),
    Setting("data_dir", parse_path, "directory of this node's files (default: ./data/<node_id>)", nullable=True),
    Setting("bind_host", parse_host, "address the HTTP and raft listeners bind (default: 127.0.0.1)"),
    Setting("http_port", parse_port, "HTTP API port (default: 8000)"),
    Setting("raft_port", parse_port, "raft (node-to-node TCP) port (default: 7000)"),
    Setting(
        "client_port",
        int_in(-1, 65535),
        "pipelined client protocol port (default: 0, any free port, advertised in /api/v1/status; -1: off)",
    ),
    Setting("client_max_in_flight", int_in(1, 1_000_000), "pipelined requests in flight per connection (default: 1024)"),
    Setting(
        "client_connections_per_client",
        int_in(1, 100_000),
        "pipelined connections from one client address (default: 64)",
    ),
    Setting(
        "advertise_host",
        parse_host,
        "host other nodes and clients use to reach this node (default: bind_host; 127.0.0.1 if bind_host is a wildcard)",
        nullable=True,
    ),
    Setting("join", parse_join, "URL of a cluster member to ask to add this node at start-up", nullable=True),
    Setting("join_timeout_s", float_over(0.0, inclusive=True), "give up joining after this many seconds (0: never)"),
    Setting(
        "join_wait_s",
        float_over(0.0),
        "how long the leader keeps a join request open while the new node catches up, forwarded or "
        "not (default: 1800, enough for 1 GB at learner_min_rate_bytes_per_s)",
    ),
    Setting("tick_ms", int_in(1, 60_000), "raft tick length in milliseconds (default: 50)"),
    Setting(
        "election_ticks", int_in(2, 10_000), "election timeout in ticks, randomised up to twice this (default: 10)"
    ),
    Setting("heartbeat_ticks", int_in(1, 10_000), "leader heartbeat interval in ticks (default: 2)"),
    Setting("max_pending", int_in(1), "writes and reads waiting for an outcome before Overloaded (default: 10000)"),
    Setting(
        "snapshot_threshold",
        int_in(10, 10_000_000),
        "log entries kept before the log is compacted into a snapshot (default: 10000)",
    ),
    Setting(
        "storage_thread",
        parse_bool,
        "do storage work (log fsyncs, applying, compaction, snapshot installs) on a worker thread (default: true)",
    ),
    Setting(
        "log_cache_bytes",
        int_in(0),
        "bytes of recent Raft log entries kept in memory; older ones are read from disk (default: 16777216)",
    ),
    Setting(
        "snapshot_threshold_bytes",
        int_in(1024),
        "bytes of log entry data kept before the log is compacted into a snapshot (default: 33554432)",
    ),
    Setting("peer_queue_max", int_in(1), "raft frames queued per peer before dropping (default: 1024)"),
    Setting("max_key_bytes", int_in(1), "longest key in UTF-8 bytes (default: 1024)"),
    Setting("max_body_bytes", int_in(1), "largest request body in bytes (default: 1048576)"),
    Setting("max_json_depth", int_in(1, 10_000), "deepest JSON nesting accepted (default: 64)"),
    Setting("request_timeout_s", float_over(0.0), "how long a request waits for its outcome (default: 5)"),
    Setting("forward_timeout_s", float_over(0.0), "how long a follower waits for the leader's answer (default: 10)"),
    Setting("shutdown_timeout_s", float_over(0.0, inclusive=True), "graceful HTTP shutdown time (default: 3)"),
    Setting("max_url_bytes", int_in(256), "longest request URL (path and query) in bytes; 414 beyond (default: 8192)"),
    Setting("max_header_bytes", int_in(1024), "largest request header block in bytes; 431 beyond (default: 8192)"),
    Setting("body_timeout_s", float_over(0.0), "seconds a request body may take to arrive; 408 beyond (default: 5)"),
    Setting(
        "client_rate_per_s",
        float_over(0.0, inclusive=True),
        "HTTP requests per second per client address, 429 beyond; 0: unlimited (default: 5000)",
    ),
    Setting("client_burst", int_in(1), "requests a client may send in a burst before its rate applies (default: 10000)"),
    Setting("watchers_per_client", int_in(1), "open watches per client address; 429 beyond (default: 64)"),
    Setting(
        "watch_buffer_bytes",
        int_in(1024),
        "bytes of events a watcher may have pending before it is disconnected (default: 8388608)",
    ),
    Setting(
        "learner_timeout_s",
        float_over(0.0),
        "a membership change's deadline; a joining learner that has not caught up within it, plus "
        "its data at learner_min_rate_bytes_per_s, is removed again (default: 30)",
    ),
    Setting(
        "learner_min_rate_bytes_per_s",
        int_in(1),
        "the slowest catch-up rate a learner's deadline allows for (default: 1048576)",
    ),
    Setting("log_level", parse_log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL (default: INFO)"),
    Setting("log_format", parse_log_format, "text (default) or json: one JSON object per log line"),
    Setting("seed", parse_seed, "integer seed for this node's randomness (default: from the OS)", nullable=True),
    Setting(
        "tls_cert_file",
        parse_file,
        "this node's certificate (PEM; `beaver-vault certs`): TLS on HTTP, mutual TLS between nodes",
        nullable=True,
    ),
    Setting("tls_key_file", parse_file, "the private key of tls_cert_file (PEM)", nullable=True),
    Setting("tls_ca_file", parse_file, "the cluster's CA certificate (PEM): verifies nodes and clients", nullable=True),
    Setting(
        "http_client_auth",
        parse_client_auth,
        "HTTP client certificates (verified by tls_ca_file): none, optional or required (default: none)",
    ),
    Setting(
        "insecure",
        parse_bool,
        "allow a bind_host beyond loopback without TLS and authentication (default: false)",
        const="true",
    ),
    Setting(
        "auth_enabled",
        parse_bool,
        "require credentials (HTTP Basic or a Bearer token) and check roles on every request (default: false)",
        const="true",
    ),
    Setting(
        "auth_admin_password_file",
        parse_file,
        "file whose first line is the password of the first admin, created once if the cluster has no "
        "user (or BEAVER_VAULT_ADMIN_PASSWORD)",
        nullable=True,
    ),
    Setting("auth_health_public", parse_bool, "/health and /ready need no credentials (default: true)"),
    Setting("auth_metrics_public", parse_bool, "/metrics needs no credentials (default: false)"),
    Setting("auth_failures_burst", int_in(1), "failed logins a client address may make at once; 429 beyond (default: 10)"),
    Setting("auth_failures_per_s", float_over(0.0), "failed logins per second per client address after the burst (default: 1)"),
    Setting(
        "join_token",
        parse_str,
        "join token (`beaver-vault auth join-token create`) presented with --join when the cluster has auth on",
        nullable=True,
    ),
    Setting("peer_max_inbound", int_in(1, 100_000), "inbound raft connections at once (default: 64)"),
    Setting(
        "peer_max_inbound_per_host", int_in(1, 100_000), "inbound raft connections from one address (default: 16)"
    ),
    Setting("peer_idle_timeout_s", float_over(0.0), "close an inbound raft connection silent this long (default: 60)"),
    Setting(
        "peer_partial_budget_bytes",
        int_in(1024),
        "bytes of incomplete inbound raft frames held at once, over all connections (default: 67108864)",
    ),
)
SETTINGS_BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}
