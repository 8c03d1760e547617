"""The monitoring UI's HTTP side, without a browser: the page and its static files are served
from package data with the right content types, unknown names are 404 (JSON, like every other
error), and ``/ui/peers`` reports each member's own status or why it did not answer.

The real-browser tests live in ``test_ui_browser.py``.
"""

from __future__ import annotations

import json
import socket
from importlib import resources

import pytest
from fake_runtime import FakeRuntime
from quart.typing import TestClientProtocol as Client

from beaver_vault.api.ui_routes import ui_files
from beaver_vault.raft.messages import Member, Membership

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}  # chromium's


async def test_root_serves_the_page_to_a_browser(client: Client) -> None:
    resp = await client.get("/", headers=HTML)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"
    html = await resp.get_data(as_text=True)
    assert "<title>Beaver-Vault monitor</title>" in html
    for asset in ('href="/ui/style.css"', 'src="/ui/app.js"'):
        assert asset in html
    # No CDN: everything the page loads comes from this node.
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html
    assert (await client.get("/ui/")).status_code == 200


@pytest.mark.parametrize("accept", [None, "application/json", "*/*", "text/html;q=0"])
async def test_root_is_a_json_404_for_api_clients(client: Client, accept: str | None) -> None:
    resp = await client.get("/", headers={"Accept": accept} if accept else None)
    assert resp.status_code == 404
    assert resp.headers["Content-Type"] == "application/json"
    body = json.loads(await resp.get_data(as_text=True))
    assert body == {"error": "no such route", "outcome": "not_applied", "path": "/", "ui": "/ui/"}
    # ... and the page is always at /ui/
    resp = await client.get("/ui/", headers={"Accept": accept} if accept else None)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("path", "content_type", "marker"),
    [
        ("/ui/index.html", "text/html; charset=utf-8", "<!doctype html>"),
        ("/ui/app.js", "text/javascript; charset=utf-8", '"use strict";'),
        ("/ui/style.css", "text/css; charset=utf-8", ":root"),
    ],
)
async def test_static_files_have_their_content_types(client: Client, path: str, content_type: str, marker: str) -> None:
    resp = await client.get(path)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == content_type
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert marker in await resp.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/ui/nope.js", "/ui/../app.py", "/ui/%2e%2e%2fapp.py", "/ui/ui_routes.py"])
async def test_unknown_ui_files_are_404(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status_code == 404
    assert resp.headers["Content-Type"] == "application/json"
    assert "error" in json.loads(await resp.get_data(as_text=True))


def test_ui_files_come_from_package_data() -> None:
    names = set(ui_files())
    assert {"index.html", "app.js", "style.css"} <= names
    folder = resources.files("beaver_vault.api").joinpath("ui")
    assert all(folder.joinpath(name).is_file() for name in names)


async def test_api_routes_still_answer_json(client: Client) -> None:
    resp = await client.get("/api/v1/status")
    assert resp.status_code == 200
    assert json.loads(await resp.get_data(as_text=True))["node_id"] == "node1"
    resp = await client.get("/no/such/route")
    assert resp.status_code == 404
    assert resp.headers["Content-Type"] == "application/json"


async def test_peers_reports_self_and_unreachable_members(runtime: FakeRuntime, client: Client) -> None:
    # node2 listens nowhere (port 9 on loopback: discard, closed here), node3 has no address.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    runtime.membership = Membership(
        (
            Member("node1", runtime.raft_address, runtime.http_address),
            Member("node2", "127.0.0.1:1", f"http://127.0.0.1:{closed_port}"),
            Member("node3", "127.0.0.1:2", ""),
        )
    )
    resp = await client.get("/ui/peers")
    assert resp.status_code == 200
    body = json.loads(await resp.get_data(as_text=True))
    assert body["node_id"] == "node1"
    peers = {p["id"]: p for p in body["peers"]}
    assert sorted(peers) == ["node1", "node2", "node3"]
    assert peers["node1"]["status"]["role"] == "leader" and peers["node1"]["error"] is None
    assert peers["node2"]["status"] is None and peers["node2"]["error"] == "ConnectError"
    assert peers["node3"]["status"] is None and peers["node3"]["error"] == "no HTTP address known"


async def test_stats_for_the_charts(runtime: FakeRuntime, client: Client) -> None:
    # The leader answers its own lag series; the samples are this node's.
    body = json.loads(await (await client.get("/ui/stats")).get_data(as_text=True))
    assert body["node"]["node_id"] == "node1" and body["node"]["window_s"] == 300
    assert body["leader"] == {"node_id": "node1", "samples": []} and body["leader_error"] is None
    # A follower whose leader has no known HTTP address says so instead of failing.
    runtime.follow("node9", None)
    body = json.loads(await (await client.get("/ui/stats")).get_data(as_text=True))
    assert body["leader"] is None and body["leader_error"] == "no HTTP address known for the leader"
    runtime.follow(None, None)
    body = json.loads(await (await client.get("/ui/stats")).get_data(as_text=True))
    assert body["leader"] is None and body["leader_error"] == "no leader known to this node"


async def test_events_route_pages_the_journal(runtime: FakeRuntime, client: Client) -> None:
    for term in (1, 2, 3):
        runtime.events.record("leader", term=term, **{"from": None, "to": "node1"})
    body = json.loads(await (await client.get("/api/v1/events?after=1&limit=1")).get_data(as_text=True))
    assert body["node_id"] == "node1" and (body["first_seq"], body["last_seq"], body["missed"]) == (1, 3, 0)
    assert [(e["seq"], e["kind"], e["term"], e["to"]) for e in body["events"]] == [(2, "leader", 2, "node1")]
    resp = await client.get("/api/v1/events?after=x")
    assert resp.status_code == 400 and "after" in json.loads(await resp.get_data(as_text=True))["error"]
