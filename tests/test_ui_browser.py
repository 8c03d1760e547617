"""The monitoring UI in a real browser (headless Debian chromium driven by playwright) against a
real 3-node cluster (``e2e_cluster``: real ``beaver-vault server`` processes).

One scenario, in the order an operator would live it, with the page open on a FOLLOWER the
whole time: all three nodes and exactly one leader; a key put through the form shows up in
the key browser and in the live change feed; deleting it shows in both; the transfer button
moves leadership to the chosen node; SIGKILL of the leader and the page names the new one;
SIGKILL of the last other node and the page says plainly that there is no leader, while
still showing the table.

The browser is Debian's ``/usr/bin/chromium`` (``scripts/install-browser.sh``); playwright's
own browser download is never used. Missing chromium is a failure with the fix in the
message, not a skip: CI installs it through the scripts.

A screenshot of each stage is written to ``tmp_path`` (set ``BEAVER_VAULT_UI_SHOTS=DIR`` to
keep them somewhere else); they are for looking at, never committed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_cluster import Cluster, Node

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INSTALL_HINT = "run scripts/install-browser.sh (as root; it installs Debian's chromium)"
WAIT_MS = 15_000  # every expectation polls; elections here take well under a second


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: {INSTALL_HINT}", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: run scripts/setup-env.sh (test extra)", pytrace=False)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("BEAVER_VAULT_UI_SHOTS") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_monitor_page_on_a_follower(browser: Any, cluster: Cluster, shots: Path) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    leader = cluster.start_cluster(3)
    follower = next(n for n in cluster.nodes.values() if n is not leader)
    third = next(n for n in cluster.nodes.values() if n not in (leader, follower))

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    console_errors: list[str] = []
    page.on("pageerror", lambda exc: console_errors.append(str(exc)))
    try:
        page.goto(follower.url + "/")
        expect(page).to_have_title(f"{follower.node_id} · Beaver-Vault monitor")

        # --- the cluster at a glance: three nodes, exactly one leader, as the page's node says
        rows = page.locator("#nodes-body tr")
        expect(rows).to_have_count(3)
        expect(page.locator("#nodes-body tr[data-role='leader']")).to_have_count(1)
        expect(row(page, leader)).to_have_attribute("data-role", "leader")
        for node in (follower, third):
            expect(row(page, node)).to_have_attribute("data-role", "follower")
            expect(row(page, node).locator("[data-reachable]")).to_have_attribute("data-reachable", "yes")
        expect(row(page, follower)).to_contain_text("(this page)")
        expect(page.locator("#serving-node")).to_have_text(f"{follower.node_id} (follower)")
        expect(page.locator("#sum-leader")).to_have_text(leader.node_id)
        expect(page.locator("#banner")).to_be_hidden()
        expect(page.locator("#feed-state")).to_have_attribute("data-state", "open")

        # --- put a key through the form: the result, the key browser and the live feed
        page.fill("#kv-key", "ui/greeting")
        page.fill("#kv-value", '{"hello": "browser", "n": 1}')
        page.click("#kv-put")
        expect(page.locator("#kv-result")).to_contain_text("ui/greeting created at revision")
        expect(page.locator("#keys-body tr[data-key='ui/greeting']")).to_contain_text('{"hello":"browser","n":1}')
        put_event = page.locator("#feed li[data-key='ui/greeting'][data-type='put']")
        expect(put_event).to_have_count(1)
        expect(put_event).to_contain_text('"hello"')

        # a value that is not JSON is refused before anything is sent, and says so
        page.fill("#kv-value", "not json")
        page.click("#kv-put")
        expect(page.locator("#kv-result [role='alert']")).to_contain_text("not valid JSON")
        expect(page.locator("#kv-result")).to_contain_text("Not applied")

        # prefix search and view
        page.fill("#prefix", "ui/")
        page.click("#search-btn")
        expect(page.locator("#keys-info")).to_contain_text("of 1 with prefix")
        page.click("#keys-body tr[data-key='ui/greeting'] button")
        expect(page.locator("#kv-result pre")).to_contain_text('"browser"')
        page.screenshot(path=str(shots / "1-put.png"), full_page=True)

        # --- delete it
        page.click("#kv-delete")
        expect(page.locator("#kv-result")).to_contain_text("ui/greeting deleted at revision")
        expect(page.locator("#keys-body tr[data-key='ui/greeting']")).to_have_count(0)
        expect(page.locator("#feed li[data-key='ui/greeting'][data-type='delete']")).to_have_count(1)

        # --- transfer leadership to the third node with the button
        page.select_option("#transfer-target", third.node_id)
        page.click("#transfer-btn")
        expect(page.locator("#transfer-result")).to_contain_text(f"OK: {third.node_id} is now the leader")
        expect(row(page, third)).to_have_attribute("data-role", "leader")
        expect(row(page, leader)).to_have_attribute("data-role", "follower")
        expect(page.locator("#nodes-body tr[data-role='leader']")).to_have_count(1)
        expect(page.locator("#sum-leader")).to_have_text(third.node_id)
        cluster.wait_leader()

        # --- SIGKILL the leader: the page reports the new leader and the dead node
        third.kill(signal.SIGKILL)
        new_leader = cluster.wait_leader(exclude=third.node_id)
        expect(page.locator("#sum-leader")).to_have_text(new_leader.node_id)
        expect(row(page, new_leader)).to_have_attribute("data-role", "leader")
        expect(page.locator("#nodes-body tr[data-role='leader']")).to_have_count(1)
        expect(row(page, third)).to_have_attribute("data-role", "no answer")
        expect(row(page, third).locator("[data-reachable]")).to_have_attribute("data-reachable", "no")
        page.screenshot(path=str(shots / "2-leader-killed.png"), full_page=True)

        # --- and the last other node: no quorum, so no leader; the page says so in words
        other = next(n for n in (leader, follower) if n is not follower and n.alive())
        other.kill(signal.SIGKILL)
        expect(page.locator("#banner")).to_be_visible()
        expect(page.locator("#banner")).to_contain_text("No leader")
        expect(page.locator("#sum-leader")).to_contain_text("none")
        expect(page.locator("#nodes-body tr[data-role='leader']")).to_have_count(0)
        expect(rows).to_have_count(3)  # still drawn from this node's own view
        expect(row(page, follower)).not_to_have_attribute("data-role", "no answer")

        # a write now fails: the error and its outcome are spelled out
        page.fill("#kv-key", "ui/after")
        page.fill("#kv-value", "1")
        page.click("#kv-put")
        expect(page.locator("#kv-result [role='alert']")).to_contain_text("Put ui/after failed — HTTP 503")
        expect(page.locator("#kv-result [data-outcome='not_applied']")).to_contain_text("Not applied")
        page.screenshot(path=str(shots / "3-no-leader.png"), full_page=True)

        # an answer that never comes (the connection drops) is an unknown outcome, not a failure
        page.route("**/api/v1/kv/**", lambda route: route.abort())
        page.click("#kv-put")
        expect(page.locator("#kv-result [data-outcome='unknown']")).to_contain_text("Outcome unknown")
        page.unroute("**/api/v1/kv/**")
        assert not console_errors, console_errors
    finally:
        context.close()


def row(page: Any, node: Node) -> Any:
    return page.locator(f"#nodes-body tr[data-node-id='{node.node_id}']")
