"""The web console's sign-in in a real browser (Debian chromium via playwright; see
``test_ui_browser.py``) against a real node with authentication on.

The page opens with the sign-in form (the node answers 401 and the browser shows no login
dialog of its own); a wrong password is refused on the page; the right one signs in: the
token is kept in sessionStorage only, the cluster table fills, a key written through the form
shows up in the live change feed (read with fetch and the bearer token, not EventSource);
signing out revokes the token and shows the form again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_cluster import FAST_FLAGS, Cluster, cluster_fixture
from test_ui_browser import WAIT_MS, browser  # noqa: F401 - the module's browser fixture

pytestmark = pytest.mark.e2e

ADMIN = ("admin", "admin-secret-pw-1")
VIEWER = ("viewer", "viewer-secret-pw-1")


@pytest.fixture
def cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    yield from cluster_fixture(tmp_path, request)


def test_sign_in_and_out(browser: Any, cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    pw_file = tmp_path / "pw"
    pw_file.write_text(ADMIN[1] + "\n")
    node = cluster.add("node1", extra_args=(*FAST_FLAGS, "--auth-enabled", "--auth-admin-password-file", str(pw_file)))
    node.auth = ADMIN
    cluster.start("node1")
    cluster.wait_leader([node])
    role = {"permissions": [{"prefix": "ui/", "access": "readwrite"}]}
    assert httpx.put(node.url + "/api/v1/auth/roles/ui", json=role, auth=ADMIN).status_code == 201
    user = {"name": VIEWER[0], "password": VIEWER[1], "roles": ["ui"]}
    assert httpx.post(node.url + "/api/v1/auth/users", json=user, auth=ADMIN).status_code == 201

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    try:
        page.goto(node.url + "/ui/")
        expect(page.locator("#signin")).to_be_visible()
        expect(page.locator("#signin-msg")).to_contain_text("authentication required")

        page.fill("#signin-user", VIEWER[0])
        page.fill("#signin-password", "wrong-password")
        page.click("#signin-submit")
        expect(page.locator("#signin-msg")).to_contain_text("sign-in failed")

        page.fill("#signin-password", VIEWER[1])
        page.click("#signin-submit")
        expect(page.locator("#whoami")).to_have_text(f"signed in as {VIEWER[0]}")
        expect(page.locator("#signin")).to_be_hidden()
        expect(page.locator("#nodes-body tr")).to_have_count(1)
        # Her role reads "ui/" only: the feed of every key is refused, the feed of "ui/" opens.
        expect(page.locator("#feed-state")).to_contain_text("lacks read access")
        page.fill("#feed-prefix", "ui/")
        page.press("#feed-prefix", "Enter")
        expect(page.locator("#feed-state")).to_have_attribute("data-state", "open")
        token = page.evaluate("sessionStorage.getItem('beaver-vault-token')")
        assert isinstance(token, str) and token.startswith("bv_")
        assert page.evaluate("localStorage.length") == 0

        page.fill("#kv-key", "ui/signed-in")
        page.fill("#kv-value", '{"by": "viewer"}')
        page.click("#kv-put")
        expect(page.locator("#kv-result")).to_contain_text("ui/signed-in created at revision")
        expect(page.locator("#feed li[data-key='ui/signed-in'][data-type='put']")).to_have_count(1)

        page.click("#signout")
        expect(page.locator("#signin")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('beaver-vault-token')") is None
        # The token was revoked on the server, not only forgotten by the page.
        r = httpx.get(node.url + "/api/v1/auth/whoami", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
        assert errors == [] and dialogs == []
    finally:
        context.close()
