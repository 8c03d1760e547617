"""The hostile-input cases of the HTTP API, as data (run by tests/test_hostile_http.py).

Each :class:`Case` is one request a hostile or broken client might send and the exact answer
the API owes it: the status, and words the JSON error must contain (so that it names the
problem). Unless ``appends`` is set, the request must not append anything to the log. The
classes (issue 11, item 8): every route x malformed JSON, wrong types, huge/negative/NaN
numbers, missing/extra fields, duplicate JSON keys, wrong content types, oversized bodies,
headers and URLs, bad percent-encodings and control characters in keys, framing conflicts,
bad methods, bad query parameters, transaction edge cases, membership abuse, watch abuse,
backup abuse.

Not here, because they are covered where the machinery lives (linked, not duplicated):
forged and absurd raft-port frames, connection slots and partial-frame budgets
(tests/test_tcp_hostile.py, tests/test_peer_validation.py, tests/test_sim_hostile.py); keys
stored exactly as sent (``..``, ``//``, Unicode forms: tests/test_keys.py); slow watchers, per
client watch limits, rate limits and socket closing (tests/test_http_limits.py); restoring a
corrupt or truncated backup file (tests/test_backup_restore.py: restore is an offline command,
not a route).

Placeholders in a case's path and body, filled in by the test once the cluster runs:
``{leader}``, ``{follower}`` (node ids), ``{leader_raft}``, ``{follower_raft}`` (their raft
addresses).

The cases live in modules by class: hostile_http_case.py (:class:`Case`, the routes),
hostile_http_body.py, hostile_http_request.py, hostile_http_routes.py.
"""

from __future__ import annotations

from hostile_http_body import (
    content_type_cases,
    malformed_cases,
    missing_extra_field_cases,
    number_cases,
    size_cases,
    wrong_type_cases,
)
from hostile_http_case import Case
from hostile_http_request import framing_cases, key_cases, method_cases, query_cases
from hostile_http_routes import membership_cases, txn_cases, watch_cases

__all__ = ["CASES", "Case", "all_cases"]


def all_cases() -> list[Case]:
    cases = (
        malformed_cases()
        + wrong_type_cases()
        + missing_extra_field_cases()
        + number_cases()
        + content_type_cases()
        + size_cases()
        + key_cases()
        + framing_cases()
        + method_cases()
        + query_cases()
        + txn_cases()
        + membership_cases()
        + watch_cases()
    )
    names = [c.name for c in cases]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise AssertionError(f"duplicate case names: {sorted(dupes)}")
    return cases


CASES = all_cases()
