"""The interface of a user workload (``python -m sim --workload FILE``).

A workload file is a plain Python module. The simulator imports it and looks for:

``client(c, i, rng)`` (required)
    A generator function: one generator per client process ``i`` (0, 1, ...). It issues one
    operation at a time by *yielding* a call made with ``c`` (a ``Client``) and receives the
    ``Result`` back from the ``yield``::

        def client(c, i, rng):
            while True:
                r = yield c.get("counter")
                if r.ok:
                    yield c.cas("counter", r.value, (r.value or 0) + 1)
                yield c.sleep(rng.randint(0, 50))

    Time is the simulator's virtual time (``c.now_ms``), so a workload is deterministic as long
    as it draws randomness only from ``rng`` (a ``random.Random`` derived from the seed) and
    keeps its state in local variables or in objects it creates per run. The generator ends
    when it returns, or when the run's operation budget is spent.

``setup(c)`` (optional)
    A generator run once, as its own process, before any client starts (faults already on).

``state_invariant(state)`` (optional)
    Called with every node's applied key-value state (a ``dict`` from key to JSON value) each
    time that node applies a batch of committed entries. Return ``None`` when it holds, or a
    message saying what is wrong: the seed fails with kind ``invariant`` (exit 15).

``check(ops)`` (optional)
    Called once at the end of the run with every operation the workload issued (a list of
    ``OpRecord``, in the order they completed, each with the ``Result`` its client got).
    Return ``None`` or a message, as above. Use it for rules over time, such as "never two
    lease holders at once".

``CLIENTS`` and ``OPS`` (optional ints)
    The number of client processes (default 3) and the operation budget of one run
    (default 200, setup included). ``sleep`` calls are not operations.

Operations and their outcomes (``Result.status``):

* ``ok``: the write was applied (cas/txn: its compare held), or the read saw ``value``;
* ``fail``: certainly not applied (cas/txn: the compare did not hold; ``value`` is then the
  current value for cas, and ``raw`` has the txn's results);
* ``unknown``: no answer in time (a timeout, a crash, a lost connection): it may have been
  applied or not, now or LATER. Depending on the seed (0 to 3 retries), the simulated client
  retries an unknown write under the same idempotency key within its deadline, so one call is
  applied at most once.

The history of ``put``/``get``/``delete`` and ``cas`` without TTL also goes to the project's
linearizability checker, per key; a key that a ``txn`` or any write with ``ttl_ms`` touched
is left out of that check (the checker models registers, not transactions or expiry: the
workload's own invariants cover such keys). ``list`` answers go to ``check`` only.

TTL: ``ttl_ms`` makes the leader stamp ``expires_at_ms = its clock + ttl_ms`` into the write,
and the simulated runtime's expirer (every 250 ms on the leader, as in production) deletes
keys whose expiry has passed, through the log. Until then an expired key is still readable.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OK, FAIL, UNKNOWN = "ok", "fail", "unknown"
DEFAULT_CLIENTS = 3
DEFAULT_OPS = 200
LIST_LIMIT = 1000  # a list answers at most this many keys


@dataclass(frozen=True, slots=True)
class Call:
    """One operation a workload yields (build it with ``Client``)."""

    f: str  # put, get, delete, cas, txn, list, sleep
    key: str = ""
    value: Any = None  # put: the value; cas: (expected, new); txn: (compare, success, failure)
    ttl_ms: int | None = None
    sleep_ms: int = 0


@dataclass(frozen=True, slots=True)
class Result:
    status: str  # ok, fail, unknown
    value: Any = None  # get: the value (None: absent); list: {key: value}; cas: the current value
    raw: Mapping[str, Any] = field(default_factory=dict)  # the state machine's answer, when there is one

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def unknown(self) -> bool:
        return self.status == UNKNOWN


@dataclass(frozen=True, slots=True)
class OpRecord:
    """One operation of a run, as ``check(ops)`` sees it."""

    process: int | str  # a client index, or "setup"
    f: str
    key: str
    value: Any
    ttl_ms: int | None
    start_ms: int  # invoke (virtual time)
    end_ms: int  # answer (or the deadline, for an unknown outcome)
    result: Result


Steps = Generator["Call", "Result", None]  # what ``client`` and ``setup`` return (type hints)


class Client:
    """Makes the calls a workload yields. Stateless apart from the clock it shows."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock

    @property
    def now_ms(self) -> int:
        """The simulated time (ms) now: the same clock the leader stamps TTLs with."""
        return int(self._clock())

    def put(self, key: str, value: Any, ttl_ms: int | None = None) -> Call:
        return Call("put", key, value, _ttl(ttl_ms))

    def get(self, key: str) -> Call:
        """A linearizable read (served by the leader, or by a follower through ReadIndex)."""
        return Call("get", key)

    def delete(self, key: str) -> Call:
        return Call("delete", key)

    def cas(self, key: str, expected: Any, new: Any, ttl_ms: int | None = None) -> Call:
        """Write ``new`` if the value is ``expected`` (``None``: if the key is absent). With
        ``ttl_ms`` it runs as a transaction that also sets the expiry."""
        return Call("cas", key, (expected, new), _ttl(ttl_ms))

    def txn(
        self,
        compare: Sequence[Mapping[str, Any]],
        success: Sequence[Mapping[str, Any]],
        failure: Sequence[Mapping[str, Any]] = (),
    ) -> Call:
        """An etcd-style transaction, the body of ``POST /api/v1/txn`` (see ``kv/txn.py``):
        ``compare`` items ``{"key", "target": "value"|"exists"|"version"|..., "op", "value"}``,
        branch items ``{"op": "put"|"delete"|"get", "key", "value"?, "ttl_ms"?}``. ``ok`` when
        the success branch ran, ``fail`` when the failure branch ran."""
        return Call("txn", "", (list(compare), list(success), list(failure)))

    def list(self, prefix: str) -> Call:
        """A linearizable read of every key under ``prefix`` (at most ``LIST_LIMIT``)."""
        return Call("list", prefix)

    def sleep(self, ms: int) -> Call:
        """Think time: not an operation, costs nothing from the budget."""
        if ms < 0:
            raise ValueError("sleep needs ms >= 0")
        return Call("sleep", sleep_ms=int(ms))


def _ttl(ttl_ms: int | None) -> int | None:
    if ttl_ms is None:
        return None
    if not isinstance(ttl_ms, int) or ttl_ms <= 0:
        raise ValueError(f"ttl_ms must be a positive int, not {ttl_ms!r}")
    return ttl_ms
