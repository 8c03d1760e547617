"""Clock skew with libfaketime (Debian package ``faketime``).

Each node runs with ``LD_PRELOAD=libfaketimeMT.so.1`` and ``FAKETIME_TIMESTAMP_FILE`` pointing at
a file of its own holding an offset such as ``+42s``; the library re-reads it (at most once a
second, ``FAKETIME_CACHE_DURATION=1``), so the nemesis changes a running node's clock by
rewriting that file. Every node starts at a seeded base offset (clocks disagree from the
start); a skew fault bumps some nodes' offsets; healing restores the base.

Only the wall clock moves (``FAKETIME_DONT_FAKE_MONOTONIC=1``), as with a real NTP step: the
nodes' timers (Trio, on CLOCK_MONOTONIC) keep real time, and what the faults exercise is every
use of the wall clock (TTL expiry stamps, forwarded requests' deadlines). A limit found here
(libfaketime 0.9.10, CPython 3.11): with that setting ``time.sleep`` fails with EINVAL; the
server never calls it (Trio sleeps through epoll timeouts), and the probe checks that Trio
sleeps fine under the library.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
)
NOTE = "wall clock only: monotonic clocks (the nodes' timers) are left alone"


def library() -> str | None:
    for path in CANDIDATES:
        if os.path.exists(path):
            return path
    return None


def unavailable_reason(workdir: Path) -> str | None:
    """Probe: does a Python under libfaketime see a +1h clock and still sleep? None if it works."""
    lib = library()
    if lib is None:
        return "libfaketime is not installed (apt-get install faketime; scripts/setup-env.sh installs them as root)"
    stamp = workdir / "clock-probe"
    stamp.write_text("+3600s\n")
    env = dict(os.environ, LD_PRELOAD=lib, FAKETIME_TIMESTAMP_FILE=str(stamp), FAKETIME_CACHE_DURATION="1")
    env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    code = "import time,sys,trio; a=time.time(); trio.run(trio.sleep, 0.05); sys.stdout.write(repr(a))"
    try:
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"libfaketime probe did not run: {e}"
    if proc.returncode != 0:
        return f"libfaketime probe failed: {proc.stderr.strip()[-200:]}"
    try:
        seen = float(proc.stdout.strip())
    except ValueError:
        return f"libfaketime probe printed {proc.stdout!r}"
    if abs(seen - time.time() - 3600) > 60:
        return "libfaketime is loaded but Python's clock did not move"
    return None


class Clocks:
    """One timestamp file per node under ``root``."""

    def __init__(self, root: Path, base_offsets_s: dict[int, float]) -> None:
        self.root = root
        self.base = dict(base_offsets_s)
        self.current = dict(base_offsets_s)
        lib = library()
        if lib is None:
            raise RuntimeError("libfaketime not found")
        self.lib = lib
        for i in self.base:
            self.set(i, self.base[i])

    def path(self, i: int) -> Path:
        return self.root / f"clock-node{i}"

    def env(self, i: int) -> dict[str, str]:
        return {
            "LD_PRELOAD": self.lib,
            "FAKETIME_TIMESTAMP_FILE": str(self.path(i)),
            "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    def set(self, i: int, offset_s: float) -> None:
        tmp = self.path(i).with_suffix(".tmp")
        tmp.write_text(f"{offset_s:+.3f}s\n")
        os.replace(tmp, self.path(i))  # atomic: the library never reads half a line
        self.current[i] = offset_s

    def heal(self) -> None:
        for i, off in self.base.items():
            if self.current.get(i) != off:
                self.set(i, off)
