"""``--log-format json|text`` (never a value or a request body in the logs) and
``beaver-vault server --print-config`` (every setting, its value and its source)."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_cluster import HOST, free_port, server_command, wait_for

from beaver_vault import cli_ops
from beaver_vault.config import SETTINGS, ConfigError
from beaver_vault.logfmt import JsonFormatter, set_term_source

# --- the JSON formatter -------------------------------------------------------------------------


def test_json_log_lines_carry_time_level_node_term_event_and_fields() -> None:
    set_term_source(lambda: 7)
    try:
        record = logging.LogRecord("beaver_vault.node", logging.INFO, __file__, 1, "%s: now %s", ("n1", "leader"), None)
        record.event = "role_changed"
        record.fields = {"role": "leader", "term": 7}
        line = JsonFormatter("n1").format(record)
    finally:
        set_term_source(None)
    obj = json.loads(line)
    assert "\n" not in line
    assert obj["level"] == "INFO" and obj["node"] == "n1" and obj["term"] == 7
    assert obj["event"] == "role_changed" and obj["message"] == "n1: now leader"
    assert obj["fields"] == {"role": "leader", "term": 7}
    assert obj["time"].endswith("Z") and obj["time"][10] == "T"
    plain = json.loads(JsonFormatter("n1").format(logging.LogRecord("x", logging.WARNING, __file__, 1, "a\nb", (), None)))
    assert plain["event"] == "a\nb" and plain["term"] is None and "fields" not in plain


# --- a real node in each format -----------------------------------------------------------------


class Proc:
    def __init__(self, tmp: Path, node_id: str, fmt: str, join: str | None = None) -> None:
        self.node_id = node_id
        self.http_port, self.raft_port = free_port(), free_port()
        self.url = f"http://{HOST}:{self.http_port}"
        self.err_path = tmp / f"{node_id}.stderr"
        argv = [*server_command(), "server", "--node-id", node_id, "--http-port", str(self.http_port)]
        argv += ["--raft-port", str(self.raft_port), "--bind-host", HOST, "--data-dir", str(tmp / node_id)]
        argv += ["--log-level", "DEBUG", "--log-format", fmt, "--tick-ms", "25", "--shutdown-timeout-s", "1"]
        if join:
            argv += ["--join", join]
        env = {k: v for k, v in os.environ.items() if not k.startswith("BEAVER_VAULT_")}
        with self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.stop()


def _members(url: str) -> int:
    return len(httpx.get(url + "/api/v1/status", timeout=2).json()["members"])


@pytest.mark.e2e
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_no_value_or_body_ever_reaches_the_logs(fmt: str, tmp_path: Path, procs: list[Proc]) -> None:
    leader = Proc(tmp_path, "node1", fmt)
    procs.append(leader)
    wait_for("node1 up", lambda: httpx.get(leader.url + "/ready", timeout=1).status_code == 200, 30.0)
    follower = Proc(tmp_path, "node2", fmt, join=leader.url)
    procs.append(follower)
    wait_for("node2 joined", lambda: _members(leader.url) == 2 and _members(follower.url) == 2, 60.0)
    secret = "SECRET-VALUE-3f9c"
    with httpx.Client(timeout=10) as c:
        assert c.put(leader.url + "/api/v1/kv/k1", json={"s": secret + "-fast"}).status_code == 200
        assert c.put(follower.url + "/api/v1/kv/k2", json={"s": secret + "-forwarded"}).status_code == 200
        r = c.put(leader.url + "/api/v1/kv/k3", json={"s": secret + "-quart"}, headers={"If-None-Match": "*"})
        assert r.status_code == 200
        txn = {"compare": [], "success": [{"op": "put", "key": "k4", "value": secret + "-txn"}]}
        assert c.post(follower.url + "/api/v1/txn", json=txn).status_code == 200
        bad = c.put(leader.url + "/api/v1/kv/k5", content=b'{"s": "' + secret.encode() + b'-bad", }')
        assert bad.status_code == 400
        assert secret in c.get(follower.url + "/api/v1/kv/k1").text  # it was stored and is readable
        assert c.get(leader.url + "/api/v1/backup").status_code == 200
    for p in procs:
        p.stop()
    for p in procs:
        text = p.stderr()
        assert "now leader" in text or "now follower" in text or "joined" in text, text[-2000:]
        assert secret not in text, f"{p.node_id} logged a value:\n{text}"
        lines = [line for line in text.splitlines() if line.strip()]
        assert len(lines) >= 5
        if fmt == "json":
            for line in lines:
                obj = json.loads(line)
                assert {"time", "level", "node", "term", "event"} <= obj.keys(), obj
                assert obj["node"] == p.node_id
            role = [json.loads(x) for x in lines if '"role_changed"' in x]
            assert role and all(isinstance(r["fields"]["term"], int) and r["fields"]["role"] for r in role)
            assert any(r["fields"]["role"] in ("leader", "follower") for r in role)
            assert any((json.loads(x)["term"] or 0) >= 1 for x in lines)  # None before the runtime exists  # the term is filled in once known
        else:
            assert all(not line.startswith("{") for line in lines)
            assert any(f" {p.node_id} INFO " in line for line in lines)


# --- --print-config -----------------------------------------------------------------------------


def print_config(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("BEAVER_VAULT_")}
    return subprocess.run(
        [*server_command(), "server", *args, "--print-config"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, **env},
        timeout=60,
    )


def parse_printed(stdout: str) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for line in stdout.splitlines():
        if line.startswith("#"):
            continue
        setting, _, source = line.partition("  # ")
        name, _, value = setting.partition(": ")
        out[name] = (value.strip(), source.strip())
    return out


def test_print_config_names_each_setting_value_and_source(tmp_path: Path) -> None:
    cfg = tmp_path / "node.yaml"
    cfg.write_text("node_id: filenode\ntick_ms: 40\nhttp_port: 9000\nlog_format: json\n")
    done = print_config(
        ["--config", str(cfg), "--http-port", "9100", "--raft-port", "9200"],
        {"BEAVER_VAULT_RAFT_PORT": "9300", "BEAVER_VAULT_ELECTION_TICKS": "12"},
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    printed = parse_printed(done.stdout)
    assert set(printed) == {s.name for s in SETTINGS}  # every setting, nothing else
    assert printed["node_id"] == ("filenode", f"file {cfg}")
    assert printed["tick_ms"] == ("40", f"file {cfg}")
    assert printed["log_format"] == ("json", f"file {cfg}")
    assert printed["http_port"] == ("9100", "flag --http-port")  # flag beats file
    assert printed["raft_port"] == ("9200", "flag --raft-port")  # flag beats environment
    assert printed["election_ticks"] == ("12", "environment BEAVER_VAULT_ELECTION_TICKS")
    assert printed["heartbeat_ticks"] == ("2", "default")
    assert printed["join"] == ("null", "default")
    assert printed["data_dir"][0] == "data/filenode" and printed["data_dir"][1].startswith("default")
    assert not (tmp_path / "data").exists()  # nothing started, nothing created
    # The output is itself a valid config file that gives the same settings.
    (tmp_path / "again.yaml").write_text(done.stdout)
    again = print_config(["--config", str(tmp_path / "again.yaml")], {}, tmp_path)
    assert again.returncode == 0, again.stderr
    assert {k: v[0] for k, v in parse_printed(again.stdout).items()} == {k: v[0] for k, v in printed.items()}


def test_print_config_refuses_a_bad_setting_like_the_server(tmp_path: Path) -> None:
    done = print_config(["--node-id", "n1"], {"BEAVER_VAULT_HTTP_PORT": "eighty"}, tmp_path)
    assert done.returncode == 2 and "BEAVER_VAULT_HTTP_PORT" in done.stderr and done.stdout == ""
    done = print_config(["--node-id", "n1", "--log-format", "xml"], {}, tmp_path)
    assert done.returncode == 2 and "log_format" in done.stderr


def test_secret_looking_settings_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("join_token", "admin_password", "cluster_secret", "api_key", "tls_private_key"):
        assert cli_ops.is_secret(name), name
    for name in ("tls_key_file", "token_file", "node_id", "http_port", "max_key_bytes", "seed"):
        assert not cli_ops.is_secret(name), name
    # The plumbing: a setting deemed secret is printed redacted, its value nowhere.
    monkeypatch.setattr(cli_ops, "is_secret", lambda name: name == "join")
    out = io.StringIO()
    flags = {"node_id": "n1", "join": "http://user:hunter2@10.0.0.1:8000"}
    assert cli_ops.print_config(flags, {}, out) == 0
    assert "hunter2" not in out.getvalue()
    assert parse_printed(out.getvalue())["join"] == ('<redacted>', "flag --join")
    with pytest.raises(ConfigError):
        cli_ops.effective_settings({"node_id": "bad id!"}, {})
