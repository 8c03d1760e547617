"""The CI-sized scale test (issue 9): ``bench/scale.py`` with 20k keys and small byte budgets on
3 real nodes, plus a 4th node joining. It checks what must hold at any size: every node's
memory stays within its budget, the term does not move from the first write to the end
(no election through loading, compaction and the snapshot sent to the new node), the join is
answered 200 and the new node catches up. No time is asserted; the full-size run is
``bench/scale.py`` without arguments (opt-in).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from scale import run  # noqa: E402

pytestmark = pytest.mark.e2e

RSS_BUDGET_MB = 150  # per node; these sizes stay far below it (about 70-100 MB here)


def test_a_loaded_cluster_stays_within_its_memory_budget_and_keeps_its_term(tmp_path: Path) -> None:
    res = run(
        tmp_path,
        keys=20_000,
        big_values=12,
        big_value_bytes=256 * 1024,
        seconds=1.0,
        rounds=1,
        clients=(16,),
        # Small byte budgets: compaction by bytes, and a snapshot for the 4th node.
        node_args=("--snapshot-threshold-bytes", str(1024 * 1024), "--snapshot-threshold", "2000"),
        quiet=True,
    )
    print(res.summary())
    assert not {k: v for k, v in res.errors.items() if not k.startswith("write")}, res.errors
    assert set(res.rss_peak_mb) == {"node1", "node2", "node3", "node4"}
    for node, mb in res.rss_peak_mb.items():
        assert 0 < mb <= RSS_BUDGET_MB, (node, mb)
    assert res.terms_before and res.terms_unchanged(), (res.terms_before, res.terms_after)
    assert res.terms_after.get("node4") == res.terms_before["node1"]
    assert res.join_status == 200
    assert res.rate_big_16 > 0 and res.rate_1k_after_16 > 0
    assert all(v > 0 for v in res.lateness_p99_ms.values()), res.lateness_p99_ms
