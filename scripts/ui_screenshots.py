"""Take the screenshots of the operator's console shown in the README (docs/screenshots/).

Usage: .venv/bin/python scripts/ui_screenshots.py [OUT_DIR]   (default: docs/screenshots)

Starts a real 3-node cluster on free loopback ports (tests/e2e_cluster.py), puts a write and
read load on it for half a minute, hands leadership over once (a marked leader change),
then pauses the new leader and asks to remove a node (refused: no quorum), and drives Debian's chromium (the browser set-up of the tests:
scripts/install-browser.sh; never `playwright install`) to the console and /docs. Every
process it starts is stopped at the end, by PID.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from e2e_cluster import Cluster, wait_for  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LOAD_S = 40


def load(url: str, stop: threading.Event) -> None:
    with httpx.Client(timeout=5) as client:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                client.put(f"{url}/api/v1/kv/users/{i % 200}", json={"name": f"user {i % 200}", "visits": i})
                client.get(f"{url}/api/v1/kv/users/{i % 200}")
            except httpx.HTTPError:
                pass


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp) / "cluster")
        stop = threading.Event()
        try:
            leader = cluster.start_cluster(3)
            follower = next(n for n in cluster.nodes.values() if n is not leader)
            other = next(n for n in cluster.nodes.values() if n not in (leader, follower))
            threads = [threading.Thread(target=load, args=(n.url, stop)) for n in (follower, leader)]
            for t in threads:
                t.start()
            time.sleep(LOAD_S / 2)
            httpx.post(f"{leader.url}/api/v1/raft/transfer-leadership", json={"NodeID": other.node_id}, timeout=10)
            time.sleep(LOAD_S / 2)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1050})
                page.goto(follower.url + "/ui/")
                expect(page.locator("#chart-lag path[data-series^='lag-']")).to_have_count(2, timeout=15000)
                wait_for("a few samples", lambda: int(page.locator("#chart-throughput .plot").get_attribute("data-points") or 0) > 60)
                page.screenshot(path=str(out / "console.png"))
                page.locator("div.columns").screenshot(path=str(out / "console-events.png"))
                stop.set()
                for t in threads:
                    t.join()
                # Pause the leader (since the transfer: `other`); then removing the old leader would
                # leave {other (paused), follower}: no reachable quorum, so the cluster refuses.
                other.kill(signal.SIGSTOP)
                victim = leader
                page.evaluate("window.scrollTo(0, 0)")
                expect(page.locator(f"#nodes-body tr[data-node-id='{other.node_id}']")).to_have_attribute(
                    "data-role", "no answer", timeout=10000
                )
                time.sleep(2.5)  # let the paused node drop out of the leader's reachable set
                page.locator(f"#nodes-body tr[data-node-id='{victim.node_id}'] button.remove-node").click()
                page.click("#confirm-ok")
                expect(page.locator("#member-result [data-result='error']")).to_be_visible(timeout=15000)
                page.screenshot(path=str(out / "console-remove-refused.png"))
                other.kill(signal.SIGCONT)
                page.goto(follower.url + "/docs")
                expect(page.locator("#docs-state")).to_have_attribute("data-state", "ok")
                page.screenshot(path=str(out / "docs.png"))
                browser.close()
        finally:
            stop.set()
            cluster.close()
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
