"""Security settings: TLS files, HTTP client certificates, the loopback rule, data-dir modes, certs."""

from __future__ import annotations

import ipaddress
import os
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from beaver_vault.cli import build_parser, main, server_flags
from beaver_vault.cli_certs import cluster_tls
from beaver_vault.config import ConfigError, is_loopback_host, load_config
from beaver_vault.security import secure_data_dir


@pytest.fixture(autouse=True)
def keep_umask() -> Iterator[None]:
    # secure_data_dir sets the process umask (as the server wants): give pytest its own back.
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


def cfg(**flags: object):  # type: ignore[no-untyped-def]
    return load_config(flags={"node_id": "n1", **flags})


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST"])
def test_loopback_hosts_need_nothing(host: str) -> None:
    assert is_loopback_host(host)
    assert cfg(bind_host=host).insecure is False


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "db.example", "::ffff:10.0.0.1"])
def test_beyond_loopback_is_refused_without_insecure(host: str) -> None:
    assert not is_loopback_host(host)
    with pytest.raises(ConfigError, match="beyond loopback.*--insecure"):
        cfg(bind_host=host)
    c = cfg(bind_host=host, insecure="true", advertise_host="10.0.0.5")
    assert c.insecure is True


def test_insecure_from_the_environment_and_as_a_bare_flag() -> None:
    c = load_config(env={"BEAVER_VAULT_NODE_ID": "n1", "BEAVER_VAULT_BIND_HOST": "0.0.0.0", "BEAVER_VAULT_INSECURE": "1"})
    assert c.insecure and c.advertise_host == "127.0.0.1"
    args = build_parser().parse_args(["server", "--node-id", "n1", "--bind-host", "0.0.0.0", "--insecure"])
    assert load_config(flags=server_flags(args)).insecure is True
    with pytest.raises(ConfigError, match="true or false"):
        cfg(insecure="maybe")


def test_tls_files_go_together_and_switch_the_advertised_scheme(tmp_path: Path) -> None:
    assert cfg().http_address.startswith("http://")
    with pytest.raises(ConfigError, match="tls_key_file, tls_ca_file missing"):
        cfg(tls_cert_file=str(tmp_path / "c.pem"))
    c = cfg(tls_cert_file="c.pem", tls_key_file="k.pem", tls_ca_file="ca.pem")
    assert c.tls_enabled and c.http_address.startswith("https://")
    with pytest.raises(ConfigError, match="needs TLS"):
        cfg(http_client_auth="required")
    with pytest.raises(ConfigError, match="none, optional, required"):
        cfg(http_client_auth="sometimes")
    assert cfg(tls_cert_file="c", tls_key_file="k", tls_ca_file="a", http_client_auth="Required").http_client_auth == (
        "required"
    )


def test_peer_limits_are_settings() -> None:
    c = cfg(peer_max_inbound="10", peer_max_inbound_per_host="3", peer_idle_timeout_s="2.5")
    assert (c.peer_max_inbound, c.peer_max_inbound_per_host, c.peer_idle_timeout_s) == (10, 3, 2.5)
    with pytest.raises(ConfigError, match="peer_partial_budget_bytes"):
        cfg(peer_partial_budget_bytes="10")


def test_secure_data_dir_creates_private_and_tightens_existing(tmp_path: Path) -> None:
    fresh = tmp_path / "a" / "b"
    assert secure_data_dir(fresh) == []
    assert fresh.stat().st_mode & 0o777 == 0o700
    wide = tmp_path / "wide"
    (wide / "sub").mkdir(parents=True)
    os.chmod(wide, 0o777)
    os.chmod(wide / "sub", 0o755)
    for name, mode in [("node.db", 0o644), ("node.db-wal", 0o666), ("sub/x", 0o604), ("ok", 0o600)]:
        (wide / name).write_text("x")
        os.chmod(wide / name, mode)
    fixed = {p.relative_to(tmp_path).as_posix() for p in secure_data_dir(wide)}
    assert fixed == {"wide", "wide/node.db", "wide/node.db-wal", "wide/sub", "wide/sub/x"}
    assert all((p.stat().st_mode & 0o077) == 0 for p in [wide, *wide.rglob("*")])
    created = wide / "new"
    created.write_text("x")  # the process umask (0o077) applies from now on
    assert created.stat().st_mode & 0o777 == 0o600


def test_certs_command_and_cluster_certificates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "certs"
    assert main(["certs", "--out", str(out), "--nodes", "node1,node2", "--hosts", "db.example,10.1.2.3"]) == 0
    printed = capsys.readouterr().out.split()
    assert {Path(p).name for p in printed} == {"ca.pem", "ca-key.pem", "node1.pem", "node1-key.pem", "node2.pem", "node2-key.pem"}
    ca_before = (out / "ca.pem").read_bytes()
    assert main(["certs", "--out", str(out), "--clients", "alice"]) == 0  # reuses the CA
    assert (out / "ca.pem").read_bytes() == ca_before and (out / "client-alice.pem").exists()
    assert main(["certs", "--out", str(out), "--nodes", "bad id"]) == 2
    assert main(["certs", "--out", str(out)]) == 2
    # The node certificate names its node and the extra hosts, and is signed by the CA.
    cert = x509.load_pem_x509_certificate((out / "node1.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["beaver-vault://node/node1"]
    assert "db.example" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("10.1.2.3") in san.get_values_for_type(x509.IPAddress)
    ca = x509.load_pem_x509_certificate(ca_before)
    cert.verify_directly_issued_by(ca)
    ssl.create_default_context(cafile=str(out / "ca.pem")).load_cert_chain(out / "node1.pem", out / "node1-key.pem")
    tls = cluster_tls(tmp_path / "data", 2)
    assert tls.ca_file.exists() and (tmp_path / "data" / "certs" / "node2.pem").exists()
    assert "--tls-ca-file" in tls.server_flags("node1")


def test_the_log_says_what_is_exposed(caplog: pytest.LogCaptureFixture) -> None:
    from beaver_vault.security import log_exposure

    with caplog.at_level("INFO", logger="beaver_vault.security"):
        log_exposure(cfg(bind_host="0.0.0.0", insecure="true"))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("WITHOUT authentication" in w for w in warnings)
    assert any("WITHOUT TLS" in w for w in warnings)
    caplog.clear()
    with caplog.at_level("INFO", logger="beaver_vault.security"):
        log_exposure(cfg(bind_host="0.0.0.0", insecure="true", tls_cert_file="c", tls_key_file="k", tls_ca_file="a"))
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "WITHOUT authentication" in warnings[0]
    caplog.clear()
    with caplog.at_level("INFO", logger="beaver_vault.security"):
        log_exposure(cfg())
    assert [r.levelname for r in caplog.records] == ["INFO"] and "development mode" in caplog.records[0].getMessage()
