"""Driver for ``test_late_unknown.py``'s partition case; runs as its own process because it
joins the harness's network namespaces (``setns``), which a pytest process must not do.

A 3-node cluster in namespaces (``jepsen_like.netns``): warm the follower's forwarding
connection, cut the follower from the leader only (it still hears the third node, so PreVote
keeps the leader in place), send a write to the follower (answered ``unknown`` once forwarding
times out), keep the cut a little longer, heal, watch the key for 10 s (retransmissions back
off to seconds), write a newer value through the leader, and check on every node that the
unknown write never took effect (the key's version is 1).
Prints ``OK`` or ``FAIL: ...``; exit 0 / 1; 77 if namespaces are not available here.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jepsen_like import netns  # noqa: E402
from jepsen_like.cluster import Cluster  # noqa: E402

KV = "/api/v1/kv/"


def main() -> int:
    if netns.unavailable_reason() is not None:
        print(f"SKIP: {netns.unavailable_reason()}")
        return 77
    root = Path(tempfile.mkdtemp(prefix="late-unknown-netns-"))
    net = netns.Network(f"bvl{os.getpid() % 100000}", 3)
    cluster = None
    try:
        net.setup()
        cluster = Cluster(3, root, network=net, seed=5, log=lambda s: None)
        leader = cluster.start_all()
        follower, third = [n for n in cluster.nodes if n is not leader]
        with httpx.Client(timeout=20.0) as http:
            warm = http.put(follower.url + KV + "warm", content="0")
            if warm.status_code != 200:
                print(f"FAIL: warm-up write {warm.status_code} {warm.text}")
                return 1
            term = (cluster.status(leader) or {}).get("term")
            net.cut({(follower.index, leader.index), (leader.index, follower.index)})
            late = http.put(follower.url + KV + "late", content=json.dumps("late"))
            body = late.json()
            if body.get("outcome") != "unknown":
                print(f"FAIL: expected an unknown outcome, got {late.status_code} {late.text}")
                return 1
            time.sleep(1.0)  # the fault's duration: the cut outlives the follower's answer
            net.heal()
            # Anything still in flight (TCP retransmits back off to seconds) arrives in this
            # window: watch the key on the leader for it.
            end = time.monotonic() + 10.0
            while time.monotonic() < end:
                seen = http.get(leader.url + KV + "late")
                if seen.status_code == 200:
                    print(f"FAIL: the unknown write took effect after healing: {seen.text}")
                    return 1
                time.sleep(0.2)
            newer = http.put(leader.url + KV + "late", content=json.dumps("newer"))
            if newer.status_code != 200:
                print(f"FAIL: newer write {newer.status_code} {newer.text}")
                return 1
            for node in cluster.nodes:
                meta = http.get(node.url + KV + "late", params={"meta": "true"}).json()
                if meta.get("value") != "newer" or meta.get("version") != 1:
                    print(f"FAIL: {node.node_id} holds {meta} (the unknown write took effect)")
                    return 1
            now = (cluster.status(leader) or {}).get("term")
            print(f"OK (leader {leader.node_id} term {term} -> {now}; the unknown write never took effect)")
            return 0
    finally:
        if cluster is not None:
            cluster.stop_all()
        net.teardown()


if __name__ == "__main__":
    sys.exit(main())
