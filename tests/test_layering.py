"""Every "never" of ../shared/ARCHITECTURE.md, read from the imports with ``ast``.

Each rule names the files it covers and says which imported module is a violation. The real
tree must have none; a planted violation (a synthetic source string placed, in thought, at a
path the rule covers) must be caught, so no rule can pass by checking nothing.

Relative imports are resolved against the file's package, so ``from ..node import driver``
is caught like ``import beaver_vault.node.driver``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PKG = SRC / "beaver_vault"

# Standard-library modules that do I/O, read the clock or run things concurrently.
EFFECTFUL_STDLIB = {"sqlite3", "socket", "time", "os", "asyncio", "threading", "subprocess", "selectors", "multiprocessing"}
STDLIB = set(sys.stdlib_module_names)


def module_name(path: Path) -> str:
    """The dotted module a file defines (``src/`` is the root of ``beaver_vault``)."""
    rel = path.relative_to(SRC if path.is_relative_to(SRC) else ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_in(source: str, path: Path) -> set[str]:
    """Every module ``source`` (the text of ``path``) imports, relative imports resolved."""
    tree = ast.parse(source, filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            out.add(base)
            # ``from pkg import mod`` may import a submodule: count pkg.mod too.
            out.update(f"{base}.{a.name}" for a in node.names if a.name != "*")
    return out


def under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def top(module: str) -> str:
    return module.split(".")[0]


@dataclass(frozen=True)
class Rule:
    name: str
    scope: tuple[Path, ...]  # directories (or files) the rule covers
    bad: Callable[[str], bool]  # is importing this module a violation?
    exempt: tuple[str, ...] = ()  # file names inside the scope the rule does not cover
    planted: str = ""  # a violating import, to prove the rule catches one
    fine: str = ""  # an allowed import, to prove the rule is not "everything is bad"

    def files(self) -> list[Path]:
        out: list[Path] = []
        for s in self.scope:
            out.extend([s] if s.is_file() else sorted(s.rglob("*.py")))
        return [f for f in out if f.name not in self.exempt]

    def violations(self, source: str, path: Path) -> list[str]:
        return sorted(m for m in imports_in(source, path) if self.bad(m))


def _pure(m: str, own: str) -> bool:
    """raft/kv: the standard library (nothing effectful), themselves, the pure error types and
    the JSON text helpers."""
    if top(m) == "beaver_vault":
        return not under(m, own, "beaver_vault.errors", "beaver_vault.jsontext")
    return top(m) not in STDLIB or top(m) in EFFECTFUL_STDLIB


# Raft's value types and configuration: what storage and transport may know of the core.
RAFT_TYPES = ("beaver_vault.raft.messages", "beaver_vault.raft.config", "beaver_vault.raft.log", "beaver_vault.raft.ready")

# Pure, sans-I/O parts of the transport the simulator may run (its hostile peer's frames go
# through the production codec and inbound gate).
SIM_MAY_USE = ("beaver_vault.transport.codec", "beaver_vault.transport.inbound")

# The TCP transport and the modules it is made of: an implementation only cli.py chooses.
TCP = ("beaver_vault.transport.tcp", "beaver_vault.transport.tcp_inbound", "beaver_vault.transport.tcp_stats")

# The SQLite storage and the modules it is made of: an implementation only cli.py chooses.
SQLITE = (
    "beaver_vault.storage.sqlite",
    "beaver_vault.storage.sqlite_rows",
    "beaver_vault.storage.sqlite_schema",
    "beaver_vault.storage.sqlite_snapshot",
)

# The settings beside beaver_vault.config (its table and its value parsers): configuration too.
CONFIG_PARTS = ("beaver_vault.config_settings", "beaver_vault.config_values")

# The composition root and its command groups (one module each): what no layer below may import.
CLI = ("beaver_vault.cli", "beaver_vault.cli_auth", "beaver_vault.cli_certs", "beaver_vault.cli_cluster", "beaver_vault.cli_ops")

RULES = [
    Rule(
        "raft: standard library only; never storage, transport, node, api, cli",
        (PKG / "raft",),
        lambda m: _pure(m, "beaver_vault.raft"),
        planted="from beaver_vault.storage.sqlite import SqliteStorage\n",
        fine="from beaver_vault.raft.messages import Entry\nimport random\n",
    ),
    Rule(
        "kv: standard library only; never storage, transport, node, api, cli",
        (PKG / "kv",),
        lambda m: _pure(m, "beaver_vault.kv"),
        planted="from ..node import driver\n",
        fine="import json\nfrom beaver_vault.kv.values import check_value\n",
    ),
    Rule(
        "jsontext: standard library only (the client and kv import it)",
        (PKG / "jsontext.py",),
        lambda m: _pure(m, "beaver_vault.jsontext"),
        planted="from beaver_vault.kv.values import canonical_json\n",
        fine="import json\nfrom collections.abc import Callable\n",
    ),
    Rule(
        "checker: standard library only, and nothing of the core",
        (PKG / "checker",),
        lambda m: (top(m) == "beaver_vault" and not under(m, "beaver_vault.checker"))
        or (top(m) != "beaver_vault" and (top(m) not in STDLIB or top(m) in EFFECTFUL_STDLIB)),
        exempt=("__main__.py",),  # the command line may read the clock for --timeout
        planted="from beaver_vault.raft.messages import Entry\n",
        fine="from .history import load_history\nimport json\n",
    ),
    Rule(
        "checker command line: nothing of the core either",
        (PKG / "checker" / "__main__.py",),
        lambda m: top(m) == "beaver_vault" and not under(m, "beaver_vault.checker"),
        planted="from beaver_vault.kv import state\n",
        fine="import time\nfrom .check import check_history\n",
    ),
    Rule(
        "storage: raft types, the pure kv state machine, errors; never the core, node, transport, api",
        (PKG / "storage",),
        lambda m: top(m) == "beaver_vault"
        and not under(m, "beaver_vault.storage", "beaver_vault.kv", "beaver_vault.errors", *RAFT_TYPES),
        planted="from beaver_vault.raft.core import RaftCore\n",
        fine="from beaver_vault.raft.messages import Entry, HardState\nimport sqlite3\n",
    ),
    Rule(
        "transport: raft types and errors only; never the core, node, storage, api",
        (PKG / "transport",),
        lambda m: top(m) == "beaver_vault" and not under(m, "beaver_vault.transport", "beaver_vault.errors", *RAFT_TYPES),
        planted="from beaver_vault.node.driver import NodeDriver\n",
        fine="import trio\nfrom beaver_vault.raft.messages import Message\n",
    ),
    Rule(
        "node (the driver and its parts): storage and transport PROTOCOLS only; no I/O, no api",
        (PKG / "node",),
        lambda m: under(m, "beaver_vault.storage", "beaver_vault.transport")
        and not under(m, "beaver_vault.storage.base", "beaver_vault.transport.base")
        or under(m, "beaver_vault.api", *CLI, "beaver_vault.config", *CONFIG_PARTS)
        or top(m) in EFFECTFUL_STDLIB
        or top(m) in {"trio", "httpx", "quart", "quart_trio", "hypercorn"},
        # The thin Trio shell (its storage thread and background chores), and its write-path trace (off unless
        # BV_TRACE_DIR is set; the driver never imports it).
        exempt=("runtime.py", "storage_thread.py", "housekeeping.py", "trace.py"),
        planted="from beaver_vault.transport.tcp import TcpTransport\n",
        fine="from beaver_vault.storage.base import Storage\nfrom beaver_vault.raft.core import RaftCore\n",
    ),
    Rule(
        "node.runtime: the driver, not the implementations it is given",
        (
            PKG / "node" / "runtime.py",
            PKG / "node" / "storage_thread.py",
            PKG / "node" / "housekeeping.py",
            PKG / "node" / "trace.py",
        ),
        lambda m: under(m, *SQLITE, *TCP, "beaver_vault.api", *CLI),
        planted="import beaver_vault.storage.sqlite\n",
        fine="import trio\nfrom beaver_vault.node.driver import NodeDriver\n",
    ),
    Rule(
        "api: never chooses implementations nor reaches into the Raft core",
        (PKG / "api",),
        lambda m: under(m, *SQLITE, *TCP, "beaver_vault.raft.core", *CLI),
        planted="from beaver_vault.raft.core import RaftCore\n",
        fine="from beaver_vault.node.runtime import NodeRuntime\n",
    ),
    Rule(
        "sim: neither the transport nor the api, and no trio, sqlite3, socket or time (the transport's pure "
        "codec and inbound gate excepted: the hostile peer, sim/hostile.py, goes through the production checks)",
        (ROOT / "sim",),
        lambda m: (under(m, "beaver_vault.transport") and not under(m, *SIM_MAY_USE))
        or under(m, "beaver_vault.api", *CLI, "beaver_vault.node.runtime")
        or under(m, *SQLITE, "beaver_vault.client")
        or top(m) in {"trio", "sqlite3", "socket", "time", "asyncio", "threading", "httpx", "quart", "quart_trio", "hypercorn"},
        # __main__.py asks git for the commit shown in the header, before any run;
        # sqlite_disk.py has its own rule below.
        exempt=("__main__.py", "sqlite_disk.py"),
        planted="from beaver_vault.transport.tcp import TcpTransport\n",
        fine="from beaver_vault.node.driver import NodeDriver\nfrom beaver_vault.transport.codec import encode_frame\n",
    ),
    Rule(
        # Issue 13: some seeds run the production SQLite storage as code under test (as the sim
        # runs the production driver and core), with the fsync boundary held in simulated time.
        # This one module may import it; it still never imports sqlite3 itself, nor anything
        # else the simulator may not.
        "sim SQLite disk: the production SQLite storage and nothing else effectful",
        (ROOT / "sim" / "sqlite_disk.py",),
        lambda m: under(m, "beaver_vault.transport", "beaver_vault.api", *CLI, "beaver_vault.node.runtime")
        or under(m, "beaver_vault.client")
        or top(m) in {"trio", "sqlite3", "socket", "time", "asyncio", "threading", "httpx", "quart", "quart_trio", "hypercorn"},
        planted="import sqlite3\n",
        fine="from beaver_vault.storage.sqlite import SQLiteStorage\n",
    ),
    Rule(
        "sim entry point: no trio, sqlite3, socket or time either",
        (ROOT / "sim" / "__main__.py",),
        lambda m: top(m) in {"trio", "sqlite3", "socket", "time"}
        or under(m, "beaver_vault.transport", "beaver_vault.api", *CLI, *SQLITE, "beaver_vault.node.runtime", "beaver_vault.client"),
        planted="import time\n",
        fine="import subprocess\nfrom sim.cli import main\n",
    ),
    Rule(
        "jepsen_like: of the project only the checker (the CLI runs as a subprocess)",
        (ROOT / "jepsen_like",),
        lambda m: (top(m) == "beaver_vault" and not under(m, "beaver_vault.checker")) or top(m) == "sim",
        planted="from beaver_vault.client import Client\n",
        fine="import httpx\nfrom beaver_vault.checker import check_history\n",
    ),
]


def _id(rule: Rule) -> str:
    return rule.name.split(":")[0]


@pytest.mark.parametrize("rule", RULES, ids=_id)
def test_the_tree_keeps_the_rule(rule: Rule) -> None:
    files = rule.files()
    assert files, f"{rule.name}: covers no file"
    problems = [f"{f.relative_to(ROOT)} imports {bad}" for f in files if (bad := rule.violations(f.read_text(), f))]
    assert not problems, f"{rule.name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("rule", RULES, ids=_id)
def test_a_planted_violation_is_caught(rule: Rule) -> None:
    where = rule.files()[0]
    assert rule.violations(rule.planted, where), f"{rule.name}: missed {rule.planted!r} in {where}"
    assert not rule.violations(rule.fine, where), f"{rule.name}: refused {rule.fine!r} in {where}"


@pytest.mark.parametrize(
    ("group", "pattern"),
    [(SQLITE, "storage/sqlite*.py"), (TCP, "transport/tcp*.py"), (CLI, "cli*.py"), (CONFIG_PARTS, "config_*.py")],
    ids=["sqlite", "tcp", "cli", "config"],
)
def test_every_part_of_a_split_module_is_named(group: tuple[str, ...], pattern: str) -> None:
    """A module split into siblings (sqlite_rows.py beside sqlite.py, ...) stays one thing to the
    rules: a new sibling the group does not name would slip past every rule that names it."""
    on_disk = {module_name(f) for f in PKG.glob(pattern)}
    assert on_disk == set(group), f"name every part: {sorted(on_disk)}"


@pytest.mark.parametrize("rule", RULES, ids=_id)
def test_no_layer_imports_any_part_of_the_command_line(rule: Rule) -> None:
    """Every layer sits below the composition root: cli.py and its command modules alike."""
    where = rule.files()[0]
    missed = [m for m in CLI if not rule.violations(f"import {m}\n", where)]
    assert not missed, f"{rule.name}: missed {missed} in {where}"


@pytest.mark.parametrize("pkg", ["raft", "kv", "checker"])
def test_pure_packages_use_no_module_level_random(pkg: str) -> None:
    for f in sorted((PKG / pkg).rglob("*.py")):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                v = node.func.value
                if isinstance(v, ast.Name) and v.id == "random" and node.func.attr != "Random":
                    raise AssertionError(f"{f.relative_to(ROOT)} calls random.{node.func.attr} (inject an rng)")


def http_statuses_in(source: str) -> list[int]:
    """Line numbers of calls passing ``status=`` (an HTTP status chosen outside api/)."""
    return sorted(
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and any(k.arg == "status" for k in node.keywords)
    )


def test_http_statuses_only_in_the_api() -> None:
    files = [*sorted((PKG / "raft").rglob("*.py")), *sorted((PKG / "node").rglob("*.py"))]
    problems = [f"{f.relative_to(ROOT)}:{line}" for f in files for line in http_statuses_in(f.read_text())]
    assert not problems, "raise a typed error from beaver_vault.errors; api/errors.py picks the status: " + ", ".join(problems)
    assert http_statuses_in('raise Rejected("busy", status=409)\n') == [1]
