"""Typed refusals: the core and the driver raise facts; ``api/errors.py`` alone picks the
HTTP status and the ``outcome``. Each case below is the status and text the API answered
with before the refusals were typed (``Rejected(text, status=...)``)."""

from __future__ import annotations

import inspect
import json

import pytest

from beaver_vault import errors
from beaver_vault.api.errors import REFUSAL_STATUS, error_parts, error_response
from beaver_vault.errors import (
    AddressInUse,
    AddressUpdateNotRequested,
    ConfigBusy,
    ForeignClusterData,
    HistoryCompacted,
    IdentityMismatch,
    IncompleteJoin,
    JoinRefused,
    LastVoter,
    NoReachableQuorum,
    NotAMember,
    NotAVoter,
    NoTransferTarget,
    OtherLeaderElected,
    Rejected,
    RetiredNodeId,
    SupersededByLeader,
    TooManyVoterChanges,
    TransferTimedOut,
)

CASES = [
    (IncompleteJoin(), 400, "NodeID and RaftAddress are required"),
    (NotAVoter("n4"), 400, "n4 is not a voting member"),
    (NotAMember("n9"), 404, "n9 is not a member"),
    (ConfigBusy("cannot change membership now: joining n4 is in progress"), 409, "cannot change membership now: joining n4 is in progress"),
    (TooManyVoterChanges(), 409, "only one voter may be added or removed at a time"),
    (AddressInUse("10.0.0.2:7000", "n2"), 409, "raft address 10.0.0.2:7000 already belongs to member n2"),
    (
        AddressUpdateNotRequested("n2", "10.0.0.2:7000", "10.0.0.9:7000"),
        409,
        'n2 is already a member at raft address 10.0.0.2:7000; to re-point it to 10.0.0.9:7000 send "UpdateAddress": true',
    ),
    (LastVoter("n1"), 409, "cannot remove the last voter"),
    (
        NoReachableQuorum("n5", 1, 2),
        409,
        "removing n5 would leave 1 reachable voter(s) of 2: no quorum; send Force: true to remove it anyway",
    ),
    (NoTransferTarget(), 409, "there is no other voter to hand leadership to"),
    (OtherLeaderElected("n2", "n3"), 409, "n3 became leader instead of n2"),
    (IdentityMismatch("n4", "h:7003", "n7"), 409, "the node at h:7003 says it is 'n7'"),
    (
        RetiredNodeId("n4"),
        409,
        "n4 was removed from this cluster before and now has a fresh data directory: it cannot rejoin under the "
        "same id (out-of-date members may still count the votes it has forgotten); join it under a new node id",
    ),
    (
        ForeignClusterData("n4", "abc"),
        409,
        "n4 holds data of another cluster (abc); only a node with a fresh data directory can join",
    ),
    (JoinRefused("n4", "this node holds data and will not be wiped"), 409, "n4 refused to join: this node holds data and will not be wiped"),
    (HistoryCompacted("revision 3 is older than the watch history kept here", 3, 10), 410, "revision 3 is older than the watch history kept here"),
    (SupersededByLeader(7, 2), 503, "superseded by another leader's entry; it was not applied"),
    (SupersededByLeader(7, 2, config=True), 503, "membership change superseded by another leader"),
    (TransferTimedOut("n2"), 503, "n2 did not take over within an election timeout"),
]


@pytest.mark.parametrize("exc, status, text", CASES, ids=lambda v: type(v).__name__ if isinstance(v, Exception) else "")
def test_each_refusal_keeps_its_status_and_text(exc: Rejected, status: int, text: str) -> None:
    got_status, body, headers = error_parts(exc)
    assert (got_status, body, headers) == (status, {"error": text, "outcome": "not_applied"}, {})
    assert exc.status is None  # the error carries facts, not HTTP
    response = error_response(exc)
    assert response.status_code == status


async def test_the_response_body_is_the_compact_json() -> None:
    body = await error_response(NotAMember("n9")).get_data(as_text=True)
    assert body == '{"error":"n9 is not a member","outcome":"not_applied"}'
    assert json.loads(body) == {"error": "n9 is not a member", "outcome": "not_applied"}


def test_every_typed_refusal_has_a_status_in_the_api_table() -> None:
    typed = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, Rejected) and cls is not Rejected
    ]
    assert typed
    unmapped = [cls.__name__ for cls in typed if not any(base in REFUSAL_STATUS for base in cls.__mro__)]
    assert not unmapped, f"add these to api/errors.py REFUSAL_STATUS: {unmapped}"
    assert {type(exc) for exc, _, _ in CASES} >= set(typed), "a typed refusal without a case above"


def test_an_explicit_status_still_wins_for_the_apis_own_refusals() -> None:
    assert error_parts(Rejected("conflict", status=409))[0] == 409
    assert error_parts(Rejected("bad command"))[0] == 400
