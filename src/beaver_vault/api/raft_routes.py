"""Cluster routes: membership, the per-node view, leadership transfer and status.

Theory of operation: every route except ``status`` is the leader's business. The runtime
raises ``NotLeader`` on a follower and the app's error handler forwards the request to the
leader, so a client may send any of them to any node. ``status`` is the node's own view and
is answered even without a leader.

* ``POST /api/v1/raft/join`` ``{"NodeID", "RaftAddress", "Force"?: bool}``: answers once the
  node has been promoted from learner to voter; ``{"members": [...]}``.
* ``POST /api/v1/raft/remove`` ``{"NodeID", "Force"?: bool}``: ``{"members": [...]}``.
* ``GET /api/v1/raft/nodes``: ``{"nodes": [...], "change": {...} | null, "recent_rollbacks":
  [...]}`` (role, voter, addresses, lag, ...; the membership change in flight; learners rolled
  back lately, with the reason).
* ``POST /api/v1/raft/transfer-leadership`` ``{"NodeID"?, "Force"?}`` (an empty body is allowed:
  the leader picks the most up-to-date reachable voter): ``{"leader": id}`` once the target leads.

Membership changes (``node/membership_change.py``): one at a time; another one is answered 409
at once with ``in_flight`` (kind, node_id, phase, age_ms, started_at_ms, ...). A change the
what-if analysis (``raft/whatif.py``) says would leave no reachable quorum during or after it is
refused 409 with ``analysis`` unless ``"Force": true``. ``?dry_run=true`` on join, remove and
transfer-leadership answers that analysis (200, ``"dry_run": true``) and changes nothing. A
caller that goes away does not take the change with it: it finishes or is rolled back.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from beaver_vault.api.context import API_PREFIX, ApiContext
from beaver_vault.api.errors import json_response
from beaver_vault.api.validation import BadInput, check_node_field, parse_bool
from beaver_vault.raft.messages import Membership


def members_json(membership: Membership) -> list[dict[str, Any]]:
    return [asdict(m) for m in membership.members]


def check_raft_address(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"RaftAddress {address!r} must look like host:port")
    return address


def force_field(body: Any) -> bool:
    force = body.get("Force", False) if isinstance(body, dict) else False
    if not isinstance(force, bool):
        raise BadInput("field 'Force' must be true or false")
    return force


def dry_run() -> bool:
    return parse_bool(request.args.get("dry_run"), "dry_run")


def register(app: QuartTrio, ctx: ApiContext) -> None:
    runtime = ctx.runtime
    opts = ctx.opts

    @app.route(f"{API_PREFIX}/raft/join", methods=["POST"])
    async def join() -> Response:
        body = await ctx.json_body()
        node_id = check_node_field(body, "NodeID")
        raft_address = check_raft_address(check_node_field(body, "RaftAddress"))
        force = force_field(body)
        if dry_run():
            return json_response(runtime.what_if("join", node_id))
        membership = await ctx.bounded(
            runtime.join(node_id, raft_address, timeout_s=opts.request_timeout_s, force=force)
        )
        return json_response({"members": members_json(membership)})

    @app.route(f"{API_PREFIX}/raft/remove", methods=["POST"])
    async def remove() -> Response:
        body = await ctx.json_body()
        node_id = check_node_field(body, "NodeID")
        force = force_field(body)
        if dry_run():
            return json_response(runtime.what_if("remove", node_id))
        membership = await ctx.bounded(runtime.remove(node_id, timeout_s=opts.request_timeout_s, force=force))
        return json_response({"members": members_json(membership)})

    @app.route(f"{API_PREFIX}/raft/nodes", methods=["GET"])
    async def nodes() -> Response:
        return json_response({"nodes": runtime.nodes(), **runtime.membership_activity()})

    @app.route(f"{API_PREFIX}/raft/transfer-leadership", methods=["POST"])
    async def transfer_leadership() -> Response:
        body = await ctx.json_body(required=False)
        target: str | None = None
        if body is not None:
            if not isinstance(body, dict):
                raise BadInput("request body must be a JSON object")
            if body.get("NodeID") is not None:
                target = check_node_field(body, "NodeID")
        force = force_field(body)
        if dry_run():
            return json_response(runtime.what_if("transfer", target))
        leader = await ctx.bounded(
            runtime.transfer_leadership(target, timeout_s=opts.request_timeout_s, force=force)
        )
        return json_response({"leader": leader})

    @app.route(f"{API_PREFIX}/status", methods=["GET"])
    async def status() -> Response:
        body = runtime.status().to_json()
        body["pipelined_address"] = ctx.pipelined_address  # null: no pipelined client port
        return json_response(body)
