"""The Trio runtime with real drivers, in process, on virtual time (autojump_clock)."""

from __future__ import annotations

import dataclasses

import pytest
import trio
import trio.testing
from local_cluster import local_cluster

from beaver_vault.errors import NotLeader, Unknown
from beaver_vault.kv import commands


async def test_three_nodes_replicate_and_read_linearizably(autojump_clock: trio.testing.MockClock) -> None:
    async with local_cluster(3) as c:
        ld = await c.wait_leader()
        assert [m.id for m in ld.status().members] == ["n1", "n2", "n3"]
        for k in range(20):
            r = await ld.write(commands.put(f"k{k}", {"n": k}), timeout_s=5)
            assert r["revision"] > 0
        await ld.read_barrier(timeout_s=5)
        rec = ld.get_local("k19")
        assert rec is not None and rec.value == '{"n":19}'
        # followers catch up (stale reads), and refuse to be the leader
        for nid in ("n2", "n3"):
            f = c.hub.nodes[nid]
            with trio.fail_after(10):
                while f.get_local("k19") is None:
                    await trio.sleep(0.05)
            with pytest.raises(NotLeader) as e:
                await f.write(commands.put("x", 1), timeout_s=1)
            assert e.value.leader_id == ld.node_id and e.value.leader_http == f"http://{ld.node_id}:8000"


async def test_leader_crash_elects_a_new_leader_and_keeps_acknowledged_writes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with local_cluster(3) as c:
        ld = await c.wait_leader()
        for k in range(10):
            await ld.write(commands.put(f"a{k}", k), timeout_s=5)
        c.stop(ld.node_id)
        new = await c.wait_leader(exclude=ld.node_id)
        await new.read_barrier(timeout_s=5)
        for k in range(10):
            rec = new.get_local(f"a{k}")
            assert rec is not None and rec.value == str(k)
        await new.write(commands.put("after", True), timeout_s=5)
        # the old leader restarts from its storage and catches up
        old = await c.start(ld.node_id, bootstrap=True)
        with trio.fail_after(30):
            while old.get_local("after") is None:
                await trio.sleep(0.05)


async def test_a_write_without_a_quorum_times_out_as_unknown(autojump_clock: trio.testing.MockClock) -> None:
    async with local_cluster(3) as c:
        ld = await c.wait_leader()
        for nid in ("n1", "n2", "n3"):
            if nid != ld.node_id:
                c.stop(nid)
        with pytest.raises(Unknown):
            await ld.write(commands.put("lost?", 1), timeout_s=0.3)


async def test_ttl_keys_are_deleted_through_the_log_by_the_leader(autojump_clock: trio.testing.MockClock) -> None:
    async with local_cluster(3) as c:
        ld = await c.wait_leader()
        now = ld.now_ms()
        await ld.write(commands.put("short", 1, expires_at_ms=now + 1000), timeout_s=5)
        await ld.write(commands.put("forever", 2), timeout_s=5)
        watcher = ld.watch("", None)
        assert ld.get_local("short") is not None
        with trio.fail_after(30):
            while ld.get_local("short") is not None:
                await trio.sleep(0.1)
        events = await ld.next_events(watcher)
        assert [(e["type"], e["key"]) for e in events] == [("delete", "short")]
        assert ld.get_local("forever") is not None
        # every node agrees (the delete went through the log)
        for rt in c.hub.nodes.values():
            with trio.fail_after(30):
                while rt.get_local("short") is not None:
                    await trio.sleep(0.1)


async def test_counters_cover_the_driver_and_a_transport_with_statistics(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with local_cluster(1) as c:
        ld = await c.wait_leader()
        for k in range(3):
            await ld.write(commands.put(f"c{k}", k), timeout_s=5)
        counters = ld.counters()
        assert counters["node_proposals"] == 3 and counters["node_applied"] >= 3
        assert not any(k.startswith("transport_") for k in counters)  # the local transport has none
        assert counters["node_membership_changes"] == 0 and counters["node_membership_rollbacks"] == 0

        @dataclasses.dataclass(frozen=True)
        class Stats:
            sent: int
            dropped_queue_full: int

        ld.driver.transport.statistics = lambda: Stats(7, 2)  # type: ignore[attr-defined]
        counters = ld.counters()
        assert counters["transport_sent"] == 7 and counters["transport_dropped_queue_full"] == 2
