"""The monitoring web UI: static files from package data, plus one read-only fan-out route.

Theory of operation: the UI is plain HTML, CSS and JavaScript in ``api/ui/`` (no build step).
``GET /`` answers ``index.html`` to a browser (a request whose ``Accept`` lists ``text/html``)
and the usual JSON 404 to anything else, so ``/`` stays "not an API route" for API clients;
``GET /ui/`` always answers the page, and ``GET /ui/<name>`` one of the files shipped in
that folder, found through ``importlib.resources`` so it works from a wheel as well as from
a checkout. Only names of files that exist in the folder are served (no path is ever joined
from user input), each with an explicit content type and ``Cache-Control: no-cache`` (the
browser revalidates, so a new release is picked up at once; the files are a few KiB).

The page itself talks to the ordinary API of the node serving it (``/api/v1/status``,
``/api/v1/raft/nodes``, ``/api/v1/kv``, ``/api/v1/watch``, ...). A browser can only reach
that one origin, so ``GET /ui/peers`` asks every member listed in this node's own status
for *its* ``/api/v1/status`` (in parallel, each bounded by ``PEER_TIMEOUT_S``) and returns
what each said, or why it did not answer. It takes no input and only reads, so it cannot be
used to reach anything but the cluster's own members. ``GET /ui/stats`` is the console's
chart data: this node's per-second samples (``stats.py``) and the leader's replication-lag
series (only the leader knows its followers' lag), asked from the leader the same way.
"""

from __future__ import annotations

import ssl
from importlib import resources
from typing import Any

import httpx
import trio
from quart import Response, request
from quart_trio import QuartTrio

from beaver_vault.api.context import API_PREFIX
from beaver_vault.api.errors import json_error, json_response
from beaver_vault.api.stats import StatsSampler
from beaver_vault.node.runtime import NodeRuntime

UI_PACKAGE = "beaver_vault.api"
UI_FOLDER = "ui"
PEER_TIMEOUT_S = 0.5

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".ico": "image/x-icon",
    ".png": "image/png",
}
NO_CACHE = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def content_type(name: str) -> str | None:
    dot = name.rfind(".")
    return CONTENT_TYPES.get(name[dot:].lower()) if dot >= 0 else None


def wants_html() -> bool:
    """The request lists ``text/html`` explicitly in ``Accept`` (as browsers do for a page)."""
    return any(mime == "text/html" and quality > 0 for mime, quality in request.accept_mimetypes)


def ui_files() -> dict[str, bytes]:
    """Every servable file of the UI folder (top level only), read once: name -> bytes."""
    folder = resources.files(UI_PACKAGE).joinpath(UI_FOLDER)
    files: dict[str, bytes] = {}
    if not folder.is_dir():
        return files
    for entry in folder.iterdir():
        if entry.is_file() and content_type(entry.name) is not None:
            files[entry.name] = entry.read_bytes()
    return files


def lag_series(stats: dict[str, Any]) -> dict[str, Any]:
    """``{node_id, samples: [{t_ms, lag}]}`` out of a node's ``/api/v1/stats`` answer."""
    samples = stats.get("samples")
    out = []
    if isinstance(samples, list):
        for s in samples:
            if isinstance(s, dict) and isinstance(s.get("t_ms"), int) and isinstance(s.get("lag"), dict):
                out.append({"t_ms": s["t_ms"], "lag": s["lag"]})
    return {"node_id": stats.get("node_id"), "samples": out}


def register(
    app: QuartTrio, runtime: NodeRuntime, sampler: StatsSampler, *, peer_ssl: ssl.SSLContext | None = None
) -> None:
    files = ui_files()
    peer_client: list[httpx.AsyncClient] = []  # one per app, opened on first use

    def client() -> httpx.AsyncClient:
        if not peer_client:
            verify: ssl.SSLContext | bool = True if peer_ssl is None else peer_ssl  # https: the cluster's CA
            peer_client.append(httpx.AsyncClient(timeout=httpx.Timeout(PEER_TIMEOUT_S), trust_env=False, verify=verify))
        return peer_client[0]

    def serve(name: str) -> Response:
        data = files.get(name)
        ctype = content_type(name)
        if data is None or ctype is None:
            return json_error(404, f"no such UI file: {name!r}", outcome="not_applied")
        return Response(data, status=200, content_type=ctype, headers=dict(NO_CACHE))

    @app.route("/", methods=["GET"])
    async def ui_index() -> Response:
        # The page for a browser (it asks for text/html); an API client (curl, the client
        # library, the tests of the API) keeps the JSON 404 that every unknown route gives,
        # with a pointer to the UI.
        if not wants_html():
            return json_error(404, "no such route", outcome="not_applied", path="/", ui="/ui/")
        return serve("index.html")

    @app.route("/ui/", methods=["GET"])
    async def ui_index_alias() -> Response:
        return serve("index.html")

    @app.route("/ui/<name>", methods=["GET"])
    async def ui_file(name: str) -> Response:
        return serve(name)

    @app.after_serving
    async def close_peer_client() -> None:
        while peer_client:
            await peer_client.pop().aclose()

    async def ask(
        client: httpx.AsyncClient, http_address: str, path: str = f"{API_PREFIX}/status"
    ) -> tuple[dict[str, Any] | None, str | None]:
        # The caller's own credential travels with the fan-out, so each node judges the caller.
        auth = request.headers.get("Authorization")
        try:
            resp = await client.get(http_address.rstrip("/") + path, headers={"Authorization": auth} if auth else None)
        except (httpx.HTTPError, ValueError) as exc:
            return None, type(exc).__name__  # ConnectError, ReadTimeout, ...
        if resp.status_code != 200:
            return None, f"HTTP {resp.status_code}"
        try:
            body = resp.json()
        except ValueError:
            return None, "not JSON"
        return (body, None) if isinstance(body, dict) else (None, "not a JSON object")

    @app.route("/ui/peers", methods=["GET"])
    async def ui_peers() -> Response:
        own = runtime.status().to_json()
        http = client()
        results: dict[str, dict[str, Any]] = {}

        async def one(member: dict[str, Any]) -> None:
            node_id = str(member["id"])
            if node_id == own["node_id"]:
                results[node_id] = {"id": node_id, "status": own, "error": None}
                return
            status: dict[str, Any] | None = None
            error: str | None = "no HTTP address known"
            address = member.get("http_address")
            if isinstance(address, str) and address:
                error = "timed out"
                with trio.move_on_after(PEER_TIMEOUT_S + 0.25):
                    status, error = await ask(http, address)
            results[node_id] = {"id": node_id, "status": status, "error": error}

        members = own.get("members") or []
        async with trio.open_nursery() as nursery:
            for member in members:
                nursery.start_soon(one, member)
        if own["node_id"] not in results:  # e.g. a node still joining: not a member yet
            results[own["node_id"]] = {"id": own["node_id"], "status": own, "error": None}
        return json_response({"node_id": own["node_id"], "peers": [results[k] for k in sorted(results)]})

    @app.route("/ui/stats", methods=["GET"])
    async def ui_stats() -> Response:
        own = sampler.to_json()
        st = runtime.status()
        leader: dict[str, Any] | None = None
        error: str | None = None
        if st.role == "leader":
            leader = lag_series(own)
        elif st.leader_id is None:
            error = "no leader known to this node"
        else:
            address = next((m.http_address for m in st.members if m.id == st.leader_id), "")
            error = "no HTTP address known for the leader"
            if address:
                error = "timed out"
                with trio.move_on_after(PEER_TIMEOUT_S + 0.25):
                    body, error = await ask(client(), address, f"{API_PREFIX}/stats")
                    if body is not None:
                        leader = lag_series(body)
        return json_response({"node": own, "leader": leader, "leader_error": error})
