"""Lost un-fsynced writes: each node's data on its own LazyFS-like FUSE layer (``lazyfs``).

When the ``disk`` fault is on, slot i's data directories live under ``<workdir>/mnt/slot<i>``,
a ``python -m jepsen_like.lazyfs`` mount of ``<workdir>/backing/slot<i>``. ``crash(i)`` makes
that layer forget everything written since the last fsync of each file and waits for its
acknowledgement; the caller must have SIGKILLed (and reaped) the node first. ``teardown``
stops the layers (SIGTERM, by PID) and lazily unmounts what is left.

Why a FUSE layer and not a cheaper trick: after a SIGKILL the kernel still holds everything
the process wrote in its page cache and writes it back, so killing a process (and even
dropping the page cache afterwards) loses nothing. Only a layer that sees each write and each
fsync can give the node back exactly what its fsyncs made durable, as a power cut would. This
is what LazyFS does (a C++ FUSE file system, not packaged for Debian or PyPI); ``lazyfs`` is a
small Python stand-in with the limits its docstring lists.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (FUSE mounts)"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    try:
        import fuse  # type: ignore[import-untyped]  # noqa: F401  (fusepy; loads libfuse.so.2)
    except (ImportError, OSError) as e:
        return f"fusepy/libfuse2 not usable ({e}); apt-get install libfuse2 and pip install fusepy (scripts/setup-env.sh)"
    return None


class Disks:
    def __init__(self, root: Path, slots: int) -> None:
        self.root = root
        self.slots = slots
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.crashes = 0

    def mount(self, i: int) -> Path:
        return self.root / "mnt" / f"slot{i}"

    def control(self, i: int) -> Path:
        return self.root / "mnt" / f"slot{i}.ctl"

    def setup(self) -> None:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        for i in range(1, self.slots + 1):
            backing = self.root / "backing" / f"slot{i}"
            backing.mkdir(parents=True, exist_ok=True)
            self.mount(i).mkdir(parents=True, exist_ok=True)
            log = (self.root / "logs" / f"lazyfs-slot{i}.log").open("ab")
            self.procs[i] = subprocess.Popen(
                [sys.executable, "-m", "jepsen_like.lazyfs", str(backing), str(self.mount(i)), str(self.control(i))],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            log.close()
        deadline = time.monotonic() + 20
        for i in range(1, self.slots + 1):
            while not (os.path.ismount(self.mount(i)) and self.control(i).exists()):
                if self.procs[i].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"lazyfs for slot {i} did not mount (see logs/lazyfs-slot{i}.log)")
                time.sleep(0.05)

    def crash(self, i: int, timeout_s: float = 20.0) -> str:
        """Roll slot i's files back to their last fsync; returns the layer's counters."""
        ack = Path(str(self.control(i)) + ".ack")
        before = ack.read_text() if ack.exists() else ""
        with open(self.control(i), "w", encoding="utf-8") as fifo:
            fifo.write("crash\n")
        deadline = time.monotonic() + timeout_s
        while True:
            now = ack.read_text() if ack.exists() else ""
            if now and now != before:
                self.crashes += 1
                return now.strip()
            if time.monotonic() > deadline:
                raise RuntimeError(f"lazyfs slot {i} did not acknowledge the crash")
            time.sleep(0.02)

    def teardown(self) -> list[str]:
        problems = []
        for i, proc in self.procs.items():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            if os.path.ismount(self.mount(i)):
                subprocess.run(["umount", "-l", str(self.mount(i))], capture_output=True, timeout=20)
                if os.path.ismount(self.mount(i)):
                    problems.append(f"{self.mount(i)} still mounted")
        if not problems:
            shutil.rmtree(self.root / "mnt", ignore_errors=True)  # empty mount points (data is in backing/)
        return problems
