"""Prometheus metrics of one node's API, served at ``GET /metrics``.

Theory of operation: every app has its own ``CollectorRegistry`` (several nodes share one
process in tests, and the global default registry would mix them up). Requests are counted
and timed by route template (``/api/v1/kv/<key:key>``, never the concrete path, so the label
set stays bounded), method and status; the Raft gauges are read from ``runtime.status()`` at
scrape time by a custom collector, so they are never stale and cost nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from beaver_vault.api.stats import RequestStats
from beaver_vault.node.runtime import NodeRuntime
from beaver_vault.storage.timings import Durations

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _RaftCollector(Collector):
    def __init__(self, runtime: NodeRuntime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterable[Metric]:
        st = self.runtime.status()
        gauges = {
            "term": ("Current Raft term", st.term),
            "commit_index": ("Highest log index known to be committed", st.commit_index),
            "applied_index": ("Highest log index applied to the state machine", st.applied_index),
            "last_log_index": ("Index of the last entry in the log", st.last_log_index),
            "snapshot_index": ("Applied index of the last snapshot (0: none)", st.snapshot_index),
            "is_leader": ("1 if this node is the leader", int(st.role == "leader")),
            "members": ("Number of members in the configuration", len(st.members)),
        }
        for name, (doc, value) in gauges.items():
            family = GaugeMetricFamily(f"beaver_vault_raft_{name}", doc, labels=["node"])
            family.add_metric([st.node_id], value)
            yield family
        for name, value in sorted(self.runtime.counters().items()):
            family = GaugeMetricFamily(f"beaver_vault_{name}", f"{name.replace('_', ' ')} (since start)", labels=["node"])
            family.add_metric([st.node_id], value)
            yield family
        yield from self._health(st.node_id, st.storage_error is None)

    def _health(self, node: str, writable: bool) -> Iterable[Metric]:
        """Issue 9: the event loop's lateness, storage durations, the log's bytes, the disk."""
        runtime = self.runtime
        # The storage that writes (the worker thread's when there is one): its timings and counts.
        storage = getattr(runtime, "disk_storage", None) or getattr(runtime, "storage", None)
        lateness = getattr(runtime, "lateness", None)
        histograms: list[tuple[str, Durations]] = []
        if isinstance(lateness, Durations):
            histograms.append(("event_loop_lateness_seconds", lateness))
        timings = getattr(storage, "timings", None)
        if timings is not None:
            histograms += [
                ("storage_fsync_seconds", timings.fsync),
                ("storage_apply_seconds", timings.apply),
                ("storage_compaction_seconds", timings.compaction),
            ]
        for name, d in histograms:
            family = HistogramMetricFamily(f"beaver_vault_{name}", d.doc, labels=["node"])
            family.add_metric([node], d.cumulative(), sum_value=d.total_s)
            yield family
        gauges: list[tuple[str, str, float]] = [
            ("storage_writable", "1 if this node can write to its disk (0: writes suspended, see /api/v1/status)", int(writable)),
        ]
        log_bytes = getattr(storage, "log_bytes", None)
        if callable(log_bytes):
            gauges.append(("raft_log_bytes", "Bytes of entry data in the log after the snapshot", int(log_bytes())))
        gc_stats = getattr(storage, "log_gc_stats", None)
        if callable(gc_stats):
            gauges.append(("storage_log_rows_collected", "Compacted log rows deleted (since start)", gc_stats().rows_deleted))
        disk = getattr(getattr(runtime, "driver", None), "disk", None)
        for key, count in sorted(getattr(disk, "counters", {}).items()):
            gauges.append((f"node_{key}", f"{key.replace('_', ' ')} (since start)", count))
        for name, doc, value in gauges:
            g = GaugeMetricFamily(f"beaver_vault_{name}", doc, labels=["node"])
            g.add_metric([node], value)
            yield g


class _CounterSource(Collector):
    """Counters read from a ``() -> {name: int}`` at scrape time (the pipelined server's)."""

    def __init__(self, prefix: str, node_id: str, read: Callable[[], dict[str, int]]) -> None:
        self.prefix = prefix
        self.node_id = node_id
        self.read = read

    def collect(self) -> Iterable[Metric]:
        for name, value in sorted(self.read().items()):
            family = GaugeMetricFamily(
                f"beaver_vault_{self.prefix}_{name}", f"{self.prefix} {name.replace('_', ' ')} (since start)", labels=["node"]
            )
            family.add_metric([self.node_id], value)
            yield family


class ApiMetrics:
    def __init__(self, runtime: NodeRuntime) -> None:
        self.node_id = runtime.node_id
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "beaver_vault_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "beaver_vault_http_request_duration_seconds",
            "Time to produce the response (for a watch: until the stream starts)",
            ["route", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.watchers = Gauge(
            "beaver_vault_watchers",
            "Watches currently streaming from this node, by transport",
            ["transport"],
            registry=self.registry,
        )
        self.refusals = Counter(
            "beaver_vault_http_limited",
            "Requests refused by the request limits before any route saw them, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.registry.register(_RaftCollector(runtime))
        # The label children of each (route, method, status) seen, looked up once: ``labels()``
        # takes a lock and builds its key on every call. Bounded like the label sets themselves.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.stats = RequestStats()  # the current second, for the console's charts (stats.py)

    def observe(self, route: str, method: str, status: int, elapsed_s: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(route, method, str(status)), self.latency.labels(route, method))
            self._children[key] = children
        children[0].inc()
        children[1].observe(elapsed_s)
        self.stats.observe(route, method, status, elapsed_s)

    def add_counters(self, prefix: str, read: Callable[[], dict[str, int]]) -> None:
        """Serve ``beaver_vault_<prefix>_<name>`` for each counter ``read()`` returns."""
        self.registry.register(_CounterSource(prefix, self.node_id, read))

    def count_refusal(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
