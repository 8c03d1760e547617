"""Beaver-Vault's HTTP API (Quart-Trio) under ``/api/v1``.

``create_app(runtime, ApiOptions(...))`` builds the app of one node; ``cli.py`` serves it with
``hypercorn.trio.serve`` in the node's nursery. Modules: ``app`` (assembly, lifecycle, error
handlers), ``context`` (options, bounded runtime calls, read consistency), ``kv_routes``,
``watch_routes`` (SSE and WebSocket), ``raft_routes`` (membership, nodes, transfer, status),
``metrics`` (Prometheus), ``validation`` (keys, bodies, headers and query parameters, checked
before anything reaches the log), ``errors`` (the one mapping from domain errors to HTTP),
``forward`` (follower -> leader proxying), ``auth_guard`` (authentication and authorisation of
every request, in front of everything), ``auth_routes`` (``/api/v1/auth``), ``passwords``
(scrypt and token hashing).
"""

from beaver_vault.api.app import ApiOptions, create_app

__all__ = ["ApiOptions", "create_app"]
