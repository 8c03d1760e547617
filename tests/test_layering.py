"""The dependency direction of ../shared/ARCHITECTURE.md, read from the imports with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "beaver_vault"

EFFECTFUL = {"trio", "sqlite3", "socket", "time", "os", "asyncio", "threading", "subprocess", "httpx", "quart", "quart_trio", "hypercorn", "selectors"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def files(pkg: Path) -> list[Path]:
    return sorted(p for p in pkg.rglob("*.py"))


@pytest.mark.parametrize("pkg", ["raft", "kv", "checker"])
def test_pure_packages_import_nothing_effectful(pkg: str) -> None:
    for f in files(SRC / pkg):
        if pkg == "checker" and f.name == "__main__.py":
            continue  # the command-line entry point may read the clock for --timeout
        bad = {m for m in imports_of(f) if m.split(".")[0] in EFFECTFUL}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


@pytest.mark.parametrize("pkg", ["raft", "kv", "checker"])
def test_pure_packages_use_no_module_level_random(pkg: str) -> None:
    for f in files(SRC / pkg):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                v = node.func.value
                if isinstance(v, ast.Name) and v.id == "random" and node.func.attr != "Random":
                    raise AssertionError(f"{f.relative_to(ROOT)} calls random.{node.func.attr} (inject an rng)")


def test_driver_depends_on_protocols_not_implementations() -> None:
    for f in files(SRC / "node"):
        if f.name == "runtime.py":
            continue
        mods = imports_of(f)
        assert not {m for m in mods if m.split(".")[0] in EFFECTFUL}, f
        assert "beaver_vault.storage.sqlite" not in mods and "beaver_vault.transport.tcp" not in mods


def test_storage_and_transport_do_not_reach_up() -> None:
    for pkg in ("storage", "transport"):
        for f in files(SRC / pkg):
            for m in imports_of(f):
                assert not m.startswith(("beaver_vault.node", "beaver_vault.api", "beaver_vault.cli")), (f, m)


def test_api_does_not_choose_implementations() -> None:
    for f in files(SRC / "api"):
        for m in imports_of(f):
            assert not m.startswith(("beaver_vault.storage.sqlite", "beaver_vault.transport.tcp", "beaver_vault.raft.core")), (f, m)


def test_simulator_never_imports_trio_sqlite_socket_or_time() -> None:
    sim = ROOT / "sim"
    if not sim.exists():
        pytest.skip("no simulator yet")
    for f in files(sim):
        if f.name == "__main__.py":
            continue
        bad = {m for m in imports_of(f) if m.split(".")[0] in {"trio", "sqlite3", "socket", "time", "asyncio", "threading"}}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"
