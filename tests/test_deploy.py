"""The deployment files under deploy/: the systemd unit template (``systemd-analyze verify``
and its offline security score, where systemd-analyze exists) and the docker-compose file
(no container engine here: checked as YAML, and every node's command and environment are
checked against the CLI's own parser and settings)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from beaver_vault.cli import build_parser, server_flags
from beaver_vault.config import config_file_from, load_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
UNIT = DEPLOY / "systemd" / "beaver-vault@.service"
NEEDS_SYSTEMD = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (Debian package 'systemd')"
)


def _instance(tmp_path: Path, text: str | None = None) -> Path:
    """The template as instance node1, its ExecStart pointed at this checkout's beaver-vault
    (verify checks that the program exists; /opt/beaver-vault does not here)."""
    exe = Path(sys.executable).with_name("beaver-vault")
    unit = (text if text is not None else UNIT.read_text()).replace("/opt/beaver-vault/bin/beaver-vault", str(exe))
    path = tmp_path / "beaver-vault@node1.service"
    path.write_text(unit)
    return path


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


@NEEDS_SYSTEMD
def test_systemd_unit_verifies_cleanly(tmp_path: Path) -> None:
    done = _analyze("verify", str(_instance(tmp_path)))
    # Unknown or misspelt keys are only warnings for verify: a clean unit prints nothing at all.
    assert done.returncode == 0 and done.stderr.strip() == "" and done.stdout.strip() == "", done.stderr


@NEEDS_SYSTEMD
def test_systemd_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystm=strict")
    done = _analyze("verify", str(_instance(tmp_path, broken)))
    assert "Unknown key" in done.stderr  # the check above can fail


@NEEDS_SYSTEMD
def test_systemd_unit_is_hardened(tmp_path: Path) -> None:
    # systemd's own exposure score: 0 (locked down) .. 10 (unprotected); "OK" is below 2.1.
    done = _analyze("security", "--offline=yes", "--threshold=20", str(_instance(tmp_path)))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "Overall exposure level" in done.stdout


def test_systemd_unit_runs_the_server_with_a_config_file_per_instance() -> None:
    text = UNIT.read_text()
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    argv = exec_start.removeprefix("ExecStart=").split()
    assert argv[0] == "/opt/beaver-vault/bin/beaver-vault" and "/etc/beaver-vault/%i.yaml" in argv
    args = build_parser().parse_args([a.replace("%i", "node1") for a in argv[1:]])
    assert args.command == "server" and args.node_id == "node1"
    example = DEPLOY / "systemd" / "node1.yaml"
    args = build_parser().parse_args([a.replace("/etc/beaver-vault/%i.yaml", str(example)).replace("%i", "node1") for a in argv[1:]])
    flags = server_flags(args)
    cfg = load_config(flags=flags, env={}, config_file=config_file_from(flags, {}))
    assert cfg.node_id == "node1" and str(cfg.data_dir) == "/var/lib/beaver-vault/node1"


def test_compose_file_describes_three_nodes_that_the_cli_accepts() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert sorted(services) == ["node1", "node2", "node3"]
    host_ports = set()
    for name, svc in services.items():
        assert svc["build"]["dockerfile"] == "deploy/docker/Dockerfile"
        assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve().is_file()
        (published,) = svc["ports"]
        host, container = published.split(":")
        assert container == "8000"
        host_ports.add(host)
        (volume,) = svc["volumes"]
        assert volume == f"{name}-data:/var/lib/beaver-vault" and f"{name}-data" in compose["volumes"]
        assert "/health" in " ".join(svc["healthcheck"]["test"])
        # The command and environment make a valid configuration for the server.
        args = build_parser().parse_args(svc["command"])
        flags = server_flags(args)
        cfg = load_config(flags=flags, env={k: str(v) for k, v in svc["environment"].items()})
        assert cfg.node_id == name and cfg.http_port == 8000 and cfg.raft_port == 7000
        assert cfg.bind_host == "0.0.0.0" and cfg.advertise_host == name and cfg.log_format == "json"
        assert str(cfg.data_dir).startswith("/var/lib/beaver-vault/")
        if name == "node1":
            assert cfg.join is None and "depends_on" not in svc
        else:
            assert cfg.join == "http://node1:8000"
            assert svc["depends_on"]["node1"]["condition"] == "service_healthy"
    assert len(host_ports) == 3


def test_dockerfile_matches_the_compose_file() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert "EXPOSE 8000 7000" in text and 'ENTRYPOINT ["beaver-vault"]' in text
    assert "USER beaver-vault" in text and "/health" in text
    for copied in ("pyproject.toml", "README.md", "scripts/constraints.txt", "src"):
        assert (DEPLOY.parent / copied).exists(), copied
