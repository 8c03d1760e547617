"""Cluster routes: membership, the per-node view, leadership transfer and status.

Theory of operation: every route except ``status`` is the leader's business. The runtime
raises ``NotLeader`` on a follower and the app's error handler forwards the request to the
leader, so a client may send any of them to any node. ``status`` is the node's own view and
is answered even without a leader.

* ``POST /api/v1/raft/join`` ``{"NodeID", "RaftAddress", "Force"?: bool, "UpdateAddress"?: bool,
  "JoinToken"?: str}``: answers once the node has been promoted from learner to voter;
  ``{"members": [...]}``. A join naming an existing member at another address is refused 409
  unless ``"UpdateAddress": true`` (then the member is re-pointed; for a node that is not a member
  that is a 404). With authentication on it needs the admin role or a join token; an existing
  member's new address needs admin.
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

import math
import re
from dataclasses import asdict
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio

from beaver_vault.api.auth_guard import JOIN_TOKEN_HEADER, AuthGuard, principal_of
from beaver_vault.api.context import API_PREFIX, ApiContext
from beaver_vault.api.errors import json_error, json_response
from beaver_vault.api.limits import client_address
from beaver_vault.api.validation import BadInput, check_node_field, parse_bool
from beaver_vault.raft.messages import Membership


def members_json(membership: Membership) -> list[dict[str, Any]]:
    return [asdict(m) for m in membership.members]


# The node id rule of the configuration (config.py): what a node can be started with.
NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# A host name, an IPv4 address or a bracketed IPv6 address: visible ASCII without spaces,
# slashes or anything a URL or a log line would read differently.
_HOST = re.compile(r"[A-Za-z0-9._-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")


def check_node_id(node_id: str) -> str:
    """A NodeID that joins: the same rule as ``--node-id`` (letters, digits, ``.``, ``_``,
    ``-``; at most 64 characters, starting with a letter or digit)."""
    if NODE_ID.fullmatch(node_id) is None:
        raise BadInput(
            f"NodeID {node_id[:80]!r} is not a valid node id: 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return node_id


def check_raft_address(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if (
        not sep
        or _HOST.fullmatch(host) is None
        or not (port.isascii() and port.isdigit() and len(port) <= 5)
        or not 0 < int(port) < 65536
    ):
        raise BadInput(f"RaftAddress {address[:80]!r} must look like host:port (port 1-65535)")
    return address


# The fields each membership request may carry; any other is a 400 (a misspelt "force" or
# "updateaddress" must not be silently ignored).
JOIN_FIELDS = frozenset({"NodeID", "RaftAddress", "Force", "UpdateAddress", "JoinToken"})
REMOVE_FIELDS = frozenset({"NodeID", "Force"})
TRANSFER_FIELDS = frozenset({"NodeID", "Force"})


def check_fields(body: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadInput("request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise BadInput(f"unknown field(s) {shown}; the fields are {', '.join(sorted(allowed))}")
    return body


def force_field(body: Any) -> bool:
    force = body.get("Force", False) if isinstance(body, dict) else False
    if not isinstance(force, bool):
        raise BadInput("field 'Force' must be true or false")
    return force


def update_address_field(body: Any) -> bool:
    update = body.get("UpdateAddress", False) if isinstance(body, dict) else False
    if not isinstance(update, bool):
        raise BadInput("field 'UpdateAddress' must be true or false")
    return update


def dry_run() -> bool:
    return parse_bool(request.args.get("dry_run"), "dry_run")


def register(app: QuartTrio, ctx: ApiContext) -> None:
    runtime = ctx.runtime
    opts = ctx.opts

    async def join_refusal(body: Any, node_id: str, raft_address: str) -> Response | None:
        """With authentication on, a join needs the admin role or a valid join token (in the body
        as ``JoinToken`` or in the ``X-Beaver-Vault-Join-Token`` header); changing an existing
        member's raft address (``UpdateAddress``, or a known id with a new address) needs admin.
        Checked here on the node that received the request and again on the leader."""
        guard: AuthGuard | None = app.extensions.get("beaver_vault.auth_guard")
        if guard is None:
            return None
        caller = principal_of(request.scope)
        if caller is not None and caller.is_admin:
            return None
        known = {m.id: m.raft_address for m in runtime.status().members}
        if body.get("UpdateAddress") is True or (node_id in known and known[node_id] != raft_address):
            who = "no credentials" if caller is None else f"user {caller.name!r}"
            return json_error(
                403 if caller is not None else 401,
                f"changing the raft address of member {node_id!r} needs the admin role ({who})",
                outcome="not_applied",
            )
        token = body.get("JoinToken", request.headers.get(JOIN_TOKEN_HEADER))
        if token is None:
            if caller is None:
                return json_error(
                    401,
                    "joining needs the admin role or a join token (JoinToken in the body or the "
                    f"{JOIN_TOKEN_HEADER} header)",
                    outcome="not_applied",
                    headers={"WWW-Authenticate": 'Basic realm="beaver-vault", Bearer realm="beaver-vault"'},
                )
            return json_error(403, f"user {caller.name!r} lacks the admin role or a join token", outcome="not_applied")
        if not isinstance(token, str) or not token:
            raise BadInput("field 'JoinToken' must be a non-empty string")
        client = client_address(request.scope)
        wait = guard.failures.wait_s(client, trio.current_time())
        if wait > 0:
            headers = {"Retry-After": str(math.ceil(wait))}
            return json_error(429, "too many failed logins from this client; retry later", outcome="not_applied", headers=headers)
        if not guard.auth.join_token_valid(token):
            await guard.auth.barrier()  # a token just made through another node?
            if not guard.auth.join_token_valid(token):
                guard.failures.failed(client, trio.current_time())
                return json_error(401, "invalid or expired join token", outcome="not_applied")
        return None

    @app.route(f"{API_PREFIX}/raft/join", methods=["POST"])
    async def join() -> Response:
        body = check_fields(await ctx.json_body(), JOIN_FIELDS)
        node_id = check_node_id(check_node_field(body, "NodeID"))
        raft_address = check_raft_address(check_node_field(body, "RaftAddress"))
        force = force_field(body)
        update_address = update_address_field(body)
        refusal = await join_refusal(body, node_id, raft_address)
        if refusal is not None:
            return refusal
        if dry_run():
            return json_response(runtime.what_if("join", node_id))
        # Answered once the node is a voter, however long its catch-up takes (join_wait_s); a
        # repeated join of the same node meanwhile waits for the same outcome.
        membership = await ctx.bounded(
            runtime.join(
                node_id, raft_address, timeout_s=opts.join_wait_s, force=force, update_address=update_address
            ),
            timeout_s=opts.join_wait_s,
        )
        return json_response({"members": members_json(membership)})

    @app.route(f"{API_PREFIX}/raft/remove", methods=["POST"])
    async def remove() -> Response:
        body = check_fields(await ctx.json_body(), REMOVE_FIELDS)
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
        # An empty body is allowed (the leader picks the target); any other body must be an
        # object (``null`` is not "no body": it is refused like ``[]``).
        body = None
        if (await ctx.read_body()).strip():
            body = check_fields(await ctx.json_body(), TRANSFER_FIELDS)
        target: str | None = None
        if body is not None:
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
