"""Fixtures shared by the test modules. pytest finds them by name: never import from here
(an imported fixture shadowed by a test's parameter is what trips ruff's F811).

* ``autojump_clock`` is pytest-trio's own (``MockClock(autojump_threshold=0)``): not redefined.
* ``options``: the API's ``ApiOptions()``. A class overrides it with its own ``options``
  fixture, a test with ``@pytest.mark.parametrize("options", [...])``.
* ``runtime``: what the API under test runs on: the in-memory stand-in ``FakeRuntime("node1")``
  by default. A module that tests the API over the real single-node runtime overrides it
  with ``node_runtime`` (pytest's module-level override)::

      @pytest.fixture
      async def runtime(node_runtime: NodeRuntime) -> NodeRuntime:
          return node_runtime

* ``node_runtime``: a real single-node ``NodeRuntime`` (memory storage, no transport) on
  virtual time, already leader.
* ``client``: Quart's in-process test client of ``create_app(runtime, options)``.
* ``cluster``: a cluster of real ``beaver-vault`` processes (``e2e_cluster.Cluster``) under
  ``tmp_path``, closed at the end, node logs printed if the test failed. Modules that need
  other flags or a module-scoped cluster define their own ``cluster``.

In-process clusters of real runtimes are ``local_cluster.local_cluster(n)`` (a context
manager: tests stop and restart nodes inside it), pure Raft cores ``raft_cluster.Cluster``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
from e2e_cluster import Cluster, cluster_fixture
from fake_runtime import FakeRuntime
from quart.typing import TestClientProtocol as Client

from beaver_vault.api import ApiOptions, create_app
from beaver_vault.node.runtime import NodeRuntime, RuntimeOptions
from beaver_vault.storage.memory import MemoryStorage


@pytest.fixture
def options() -> ApiOptions:
    return ApiOptions()


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime("node1")


@pytest.fixture
async def node_runtime(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> AsyncIterator[NodeRuntime]:
    rt = NodeRuntime(
        node_id="node1",
        storage=MemoryStorage(),
        options=RuntimeOptions(raft_address="127.0.0.1:7000", http_address="http://127.0.0.1:8000", seed=1),
    )
    await nursery.start(rt.run)
    with trio.fail_after(30):
        while rt.status().role != "leader":
            await trio.sleep(0.05)
    yield rt


@pytest.fixture
async def client(runtime: NodeRuntime, options: ApiOptions) -> AsyncIterator[Client]:
    app = create_app(runtime, options)
    async with app.test_app() as test_app:
        yield test_app.test_client()


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    yield from cluster_fixture(tmp_path, request)
