"""The what-if analysis of membership changes (raft/whatif.py): pure quorum arithmetic."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from beaver_vault.raft.quorum import majority
from beaver_vault.raft.whatif import ClusterView, analyse, catchup_deadline_ticks

NAMES = [f"n{i}" for i in range(1, 8)]


def view(voters: str, reachable: str, learners: str = "", leader: str = "n1") -> ClusterView:
    return ClusterView(leader, tuple(voters.split()), tuple(learners.split()), frozenset(reachable.split()))


def test_join_to_a_healthy_cluster() -> None:
    w = analyse(view("n1 n2 n3", "n1 n2 n3"), "join", "n4", bytes_to_send=1234)
    assert w.voters_after == ("n1", "n2", "n3", "n4")
    assert (w.quorum_before, w.quorum_after) == (2, 3)
    assert w.quorum_now and w.quorum_during and w.quorum_after_ok and w.allowed
    assert w.bytes_to_send == 1234 and w.refusal() is None
    body = w.to_json()
    assert body["allowed"] is True and body["voters_after"] == ["n1", "n2", "n3", "n4"]


def test_join_with_one_voter_down_keeps_the_quorum() -> None:
    # 2 of 3 reachable; after: 2 + the new node = 3 of 4 (quorum 3).
    w = analyse(view("n1 n2 n3", "n1 n2"), "join", "n4")
    assert w.unreachable_voters == ("n3",) and w.allowed


def test_join_without_a_quorum_now_is_refused() -> None:
    w = analyse(view("n1 n2 n3", "n1"), "join", "n4")
    assert not w.quorum_now and not w.allowed and w.possible
    assert "no reachable quorum now" in (w.refusal() or "")
    assert "Force" in (w.refusal() or "")


def test_remove_that_would_lose_the_quorum() -> None:
    # n3 is down; removing n2 leaves n1, n3 with only n1 reachable: 1 of 2 < 2.
    w = analyse(view("n1 n2 n3", "n1 n2"), "remove", "n2")
    assert w.voters_after == ("n1", "n3") and w.quorum_after == 2
    assert not w.quorum_after_ok and not w.allowed
    assert "1 of 2 voters would be reachable" in (w.refusal() or "")


def test_removing_a_dead_voter_restores_the_quorum() -> None:
    # 4 voters, 2 down: no quorum now (2 < 3); removing one dead voter: 2 of 3 -> quorum again.
    w = analyse(view("n1 n2 n3 n4", "n1 n2"), "remove", "n4")
    assert not w.quorum_now and w.quorum_after_ok and w.allowed


def test_impossible_removals() -> None:
    assert analyse(view("n1", "n1"), "remove", "n1").problem == "cannot remove the last voter"
    w = analyse(view("n1 n2 n3", "n1 n2 n3"), "remove", "n9")
    assert not w.possible and not w.allowed and w.refusal() == "n9 is not a member"


def test_removing_the_leader_hands_over() -> None:
    w = analyse(view("n1 n2 n3", "n1 n2 n3"), "remove", "n1")
    assert w.leader_after is None and w.voters_after == ("n2", "n3") and w.allowed


def test_removing_a_learner_changes_no_voter() -> None:
    w = analyse(view("n1 n2 n3", "n1 n2 n3", learners="n4"), "remove", "n4")
    assert w.voters_after == w.voters_before and w.learners_after == () and w.allowed


def test_transfer() -> None:
    ok = analyse(view("n1 n2 n3", "n1 n2 n3"), "transfer", "n2")
    assert ok.leader_after == "n2" and ok.allowed
    dead = analyse(view("n1 n2 n3", "n1 n2"), "transfer", "n3")
    assert not dead.allowed and "not reachable" in (dead.refusal() or "")
    assert not analyse(view("n1", "n1"), "transfer", None).possible
    assert analyse(view("n1 n2 n3", "n1 n3"), "transfer", None).node_id == "n3"  # a reachable one


def test_catchup_deadline_scales_with_the_data() -> None:
    assert catchup_deadline_ticks(0, base_ticks=600, bytes_per_tick=1000) == 600
    assert catchup_deadline_ticks(1, base_ticks=600, bytes_per_tick=1000) == 601
    one_gb = catchup_deadline_ticks(2**30, base_ticks=600, bytes_per_tick=52_429)
    assert one_gb * 50 / 1000 > 1000  # > 1000 s at 50 ms ticks: a 1 GB catch-up is not cut short


clusters = st.builds(
    lambda n, reach, leader: (NAMES[:n], [v for v, r in zip(NAMES[:n], reach, strict=False) if r], NAMES[leader % n]),
    st.integers(1, 7),
    st.lists(st.booleans(), min_size=7, max_size=7),
    st.integers(0, 6),
)


@given(clusters, st.sampled_from(NAMES + ["new"]))
def test_properties_of_removal(cluster: tuple[list[str], list[str], str], target: str) -> None:
    voters, reachable, leader = cluster
    w = analyse(ClusterView(leader, tuple(voters), (), frozenset(reachable)), "remove", target)
    reach = set(reachable) | {leader}
    assert w.reachable_voters == tuple(sorted(v for v in voters if v in reach))
    if target not in voters or len(voters) == 1:
        assert not w.possible and not w.allowed
        return
    after = [v for v in voters if v != target]
    assert list(w.voters_after) == sorted(after) and w.quorum_after == majority(len(after))
    assert w.allowed == (sum(v in reach for v in after) >= majority(len(after)))
    if target not in reach and w.quorum_now:
        assert w.allowed  # removing a dead voter never loses a quorum we have


@given(clusters)
def test_properties_of_join(cluster: tuple[list[str], list[str], str]) -> None:
    voters, reachable, leader = cluster
    w = analyse(ClusterView(leader, tuple(voters), (), frozenset(reachable)), "join", "new")
    assert set(w.voters_after) == set(voters) | {"new"}
    # Adding a voter that will answer keeps the quorum exactly when there is one now.
    assert w.allowed == w.quorum_now
    assert w.quorum_after_ok or not w.quorum_now


@given(clusters, st.sampled_from(NAMES))
def test_properties_of_transfer(cluster: tuple[list[str], list[str], str], target: str) -> None:
    voters, reachable, leader = cluster
    w = analyse(ClusterView(leader, tuple(voters), (), frozenset(reachable)), "transfer", target)
    assert w.voters_after == w.voters_before
    if w.allowed:
        assert target in voters and (target in reachable or target == leader) and w.quorum_now
