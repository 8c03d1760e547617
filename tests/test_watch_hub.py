"""The watch hub (pure): ordered replay from history, bounded buffers, compaction errors."""

from __future__ import annotations

import pytest

from beaver_vault.node.watch import WatchCompacted, WatchHub


def ev(rev: int, key: str = "a", type_: str = "put") -> dict[str, object]:
    return {"type": type_, "key": key, "value": rev, "revision": rev}


def test_resume_from_far_back_replays_more_than_the_buffer_then_bounds_live_events() -> None:
    hub = WatchHub(0, history_max=5000)
    for r in range(1, 3001):
        hub.publish(r, [ev(r)])
    w = hub.subscribe("", 1, buffer_max=100)
    assert w.closed_reason is None
    got = w.take()
    assert [e["revision"] for e in got] == list(range(1, 3001))
    for r in range(3001, 3101):
        hub.publish(r, [ev(r)])
    assert w.closed_reason is None and len(w.take()) == 100
    for r in range(3101, 3202):  # 101 > buffer_max without a take: closed with a reason
        hub.publish(r, [ev(r)])
    assert w.closed_reason is not None and "fell behind" in w.closed_reason


def test_prefix_filter_and_default_start_after_now() -> None:
    hub = WatchHub(10)
    hub.publish(11, [ev(11, "x/1"), ev(11, "y/1")])
    w = hub.subscribe("x/", None)
    hub.publish(12, [ev(12, "x/2"), ev(12, "y/2")])
    assert [e["key"] for e in w.take()] == ["x/2"]


def test_history_older_than_kept_is_refused() -> None:
    hub = WatchHub(0, history_max=3)
    for r in range(1, 6):
        hub.publish(r, [ev(r)])
    with pytest.raises(WatchCompacted):
        hub.subscribe("", 2)
    assert [e["revision"] for e in hub.subscribe("", 3).take()] == [3, 4, 5]


def test_reset_closes_watchers() -> None:
    hub = WatchHub(0)
    w = hub.subscribe("", None)
    hub.reset(100)
    assert w.closed_reason is not None
    with pytest.raises(WatchCompacted):
        hub.subscribe("", 50)
