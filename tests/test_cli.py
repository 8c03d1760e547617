"""The command line: both flag spellings, help, configuration errors, and the join loop."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trio

from beaver_vault import cli
from beaver_vault.config import load_config

SEED_ARGV = ["server", "-node-id", "node1", "-http-port", "8000", "-raft-port", "7000"]
USUAL_ARGV = ["server", "--node-id", "node1", "--http-port", "8000", "--raft-port", "7000"]


def flags_of(argv: list[str]) -> dict[str, object]:
    args = cli.build_parser().parse_args(argv)
    return {k: v for k, v in cli.server_flags(args).items() if v is not None}


def run_cli(*argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BEAVER_VAULT_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "beaver_vault", *argv],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


# --- parsing -------------------------------------------------------------------------------------


def test_seed_single_dash_flags() -> None:
    assert flags_of(SEED_ARGV) == {"node_id": "node1", "http_port": "8000", "raft_port": "7000"}


def test_single_and_double_dash_spellings_agree() -> None:
    assert flags_of(SEED_ARGV) == flags_of(USUAL_ARGV)


def test_equals_forms() -> None:
    assert flags_of(["server", "-node-id=a", "--http-port=8001", "-raft-port=7001"]) == {
        "node_id": "a",
        "http_port": "8001",
        "raft_port": "7001",
    }


def test_every_setting_has_both_spellings() -> None:
    argv = ["server"]
    for i, name in enumerate(
        ["data_dir", "bind_host", "advertise_host", "join", "tick_ms", "election_ticks", "log_level", "seed"]
    ):
        dashed = name.replace("_", "-")
        argv += [("-" if i % 2 else "--") + dashed, f"v{i}"]
    argv += ["-config", "c.yaml"]
    flags = flags_of(argv)
    assert flags["data_dir"] == "v0" and flags["seed"] == "v7" and flags["config"] == "c.yaml"


def test_flags_build_the_config_like_the_seed_says() -> None:
    cfg = load_config(flags=flags_of(SEED_ARGV), env={})
    assert cfg.node_id == "node1"
    assert cfg.http_address == "http://127.0.0.1:8000"
    assert cfg.raft_address == "127.0.0.1:7000"
    assert cfg.data_dir == Path("data/node1")


def test_join_flag() -> None:
    flags = flags_of([*USUAL_ARGV, "--join", "http://127.0.0.1:8000"])
    cfg = load_config(flags=flags, env={})
    assert cfg.join == "http://127.0.0.1:8000"


def test_abbreviations_are_not_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(["server", "--node", "n"])
    assert info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_a_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2


def test_cluster_defaults_and_spellings() -> None:
    a = cli.build_parser().parse_args(["cluster"])
    assert (a.nodes, a.base_http_port, a.base_raft_port, a.data_root) == (3, 8000, 7000, "./data")
    b = cli.build_parser().parse_args(["cluster", "-nodes", "5", "--base-http-port", "9000", "-data-root", "/tmp/x"])
    assert (b.nodes, b.base_http_port, b.data_root) == (5, 9000, "/tmp/x")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--nodes", "0"], "--nodes"),
        (["--base-http-port", "65535"], "within 1-65535"),
        (["--base-http-port", "7000", "--base-raft-port", "7001"], "overlap"),
        (["--log-level", "chatty"], "--log-level"),
    ],
)
def test_cluster_rejects_bad_arguments(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cluster", *argv], env={}) == 2
    assert fragment in capsys.readouterr().err


# --- configuration errors exit 2 with a clear message ---------------------------------------------


def test_bad_port_flag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["server", "-node-id", "n", "-http-port", "abc"], env={}) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err
    assert "--http-port" in err and "'abc'" in err


def test_missing_node_id_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["server"], env={}) == 2
    assert "node_id" in capsys.readouterr().err


def test_unknown_env_var_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["server", "--node-id", "n"], env={"BEAVER_VAULT_NODEID": "x"}) == 2
    assert "BEAVER_VAULT_NODEID" in capsys.readouterr().err


def test_config_file_given_by_flag_and_env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("node_id: n\nraft_port: seven\n", encoding="utf-8")
    assert cli.main(["server", "--config", str(bad)], env={}) == 2
    assert "raft_port" in capsys.readouterr().err
    assert cli.main(["server"], env={"BEAVER_VAULT_CONFIG": str(bad)}) == 2
    assert "'seven'" in capsys.readouterr().err


# --- as a real process ----------------------------------------------------------------------------


def test_server_help_runs_as_a_subprocess() -> None:
    result = run_cli("server", "--help")
    assert result.returncode == 0, result.stderr
    for flag in ("--node-id", "-node-id", "--http-port", "-http-port", "--raft-port", "--join", "--config"):
        assert flag in result.stdout


def test_console_script_help() -> None:
    script = Path(sys.executable).parent / "beaver-vault"
    if not script.exists():
        pytest.skip("console script not installed next to this interpreter")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert "server" in result.stdout and "cluster" in result.stdout


def test_bad_config_file_exits_2_as_a_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "node.yaml"
    path.write_text("node_id: node1\nhttp_port: 99999\n", encoding="utf-8")
    result = run_cli("server", "-config", str(path))
    assert result.returncode == 2
    assert "configuration error" in result.stderr
    assert "http_port" in result.stderr and "node.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_env_exits_2_as_a_subprocess() -> None:
    result = run_cli("server", "-node-id", "node1", env={"BEAVER_VAULT_HTTP_PORT": "eighty"})
    assert result.returncode == 2
    assert "BEAVER_VAULT_HTTP_PORT" in result.stderr and "'eighty'" in result.stderr


# --- the join loop ---------------------------------------------------------------------------------


@dataclass
class FakeStatus:
    cluster_id: str | None


class FakeRuntime:
    def __init__(self) -> None:
        self.cluster_id: str | None = None

    def status(self) -> FakeStatus:
        return FakeStatus(self.cluster_id)


def join_config() -> cli.Config:
    return load_config(flags={"node_id": "node2", "http_port": "8001", "raft_port": "7001", "join": "http://h:8000/"})


def scripted(answers: list[int | Exception], seen: list[httpx.Request]) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={"error": "nope"} if answer >= 400 else {"ok": True})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def test_classify_join_response() -> None:
    assert cli.classify_join_response(200, "{}").ok
    assert cli.classify_join_response(409, "not pristine").done
    assert not cli.classify_join_response(409, "").ok
    assert not cli.classify_join_response(503, "").done
    assert not cli.classify_join_response(504, "").done
    assert not cli.classify_join_response(429, "").done
    assert cli.classify_join_response(400, "missing NodeID").done


async def test_join_retries_until_accepted(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[httpx.Request] = []
    stops: list[int] = []
    answers: list[int | Exception] = [httpx.ConnectError("refused"), 503, 200]
    async with scripted(answers, seen) as client:
        await cli.join_cluster(join_config(), FakeRuntime(), stops.append, client=client)  # type: ignore[arg-type]
    assert stops == []
    assert len(seen) == 3
    assert str(seen[0].url) == "http://h:8000/api/v1/raft/join"
    assert seen[0].read() == b'{"NodeID":"node2","RaftAddress":"127.0.0.1:7001"}'


async def test_join_refused_stops_the_node(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[httpx.Request] = []
    stops: list[int] = []
    async with scripted([503, 409], seen) as client:
        await cli.join_cluster(join_config(), FakeRuntime(), stops.append, client=client)  # type: ignore[arg-type]
    assert stops == [cli.EXIT_JOIN_FAILED]


async def test_join_gives_up_after_its_timeout(autojump_clock: trio.testing.MockClock) -> None:
    cfg = load_config(flags={"node_id": "n", "join": "http://h:8000", "join_timeout_s": "3"})
    seen: list[httpx.Request] = []
    stops: list[int] = []
    start = trio.current_time()
    async with scripted([503] * 100, seen) as client:
        await cli.join_cluster(cfg, FakeRuntime(), stops.append, client=client)  # type: ignore[arg-type]
    assert stops == [cli.EXIT_JOIN_FAILED]
    assert trio.current_time() - start <= 3.0
    assert 2 <= len(seen) < 10  # backoff, not a busy loop


async def test_a_member_does_not_ask_again(autojump_clock: trio.testing.MockClock) -> None:
    runtime = FakeRuntime()
    runtime.cluster_id = "c-123"
    seen: list[httpx.Request] = []
    stops: list[int] = []
    async with scripted([], seen) as client:
        await cli.join_cluster(join_config(), runtime, stops.append, client=client)  # type: ignore[arg-type]
    assert seen == [] and stops == []


# --- one real node: start, answer, stop on SIGTERM -------------------------------------------------


def free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_server(tmp_path: Path, http_port: int, raft_port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEAVER_VAULT_")}
    return subprocess.Popen(
        [sys.executable, "-m", "beaver_vault", "server", "-node-id", "solo"]
        + ["-http-port", str(http_port), "-raft-port", str(raft_port), "--data-dir", str(tmp_path / "solo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.e2e
def test_server_starts_prints_its_url_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    import signal

    http_port, raft_port = free_ports(2)
    proc = start_server(tmp_path, http_port, raft_port)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once every service has started
        assert f"http://127.0.0.1:{http_port}" in line, line
        status = httpx.get(f"http://127.0.0.1:{http_port}/api/v1/status", timeout=10).json()
        assert status["node_id"] == "solo"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "received SIGTERM" in err and "storage closed" in err
    assert "solo" in err  # log lines carry the node id
    assert (tmp_path / "solo" / "node.db").exists()


@pytest.mark.e2e
def test_server_exits_1_when_its_port_is_taken(tmp_path: Path) -> None:
    import socket

    http_port, raft_port = free_ports(2)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", http_port))
        busy.listen()
        proc = start_server(tmp_path, http_port, raft_port)
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 1, err
    assert "in use" in err
    assert "Traceback" not in err
