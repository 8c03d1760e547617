"""``beaver-vault certs``: a CA and node (and client) certificates for a cluster.

    beaver-vault certs --out DIR --nodes node1,node2,node3 [--hosts db.example,10.0.0.5] [--clients alice]

writes, each file mode 0600 in a 0700 directory:

* ``ca.pem`` / ``ca-key.pem``: the cluster's CA (reused when DIR already has one, so nodes
  can be added later with the same CA);
* ``<node>.pem`` / ``<node>-key.pem``: the node's certificate, CN = node id, subjectAltName
  URI ``beaver-vault://node/<node>`` (what the raft port trusts: ``transport.tls``) plus
  ``localhost``, ``127.0.0.1``, ``::1`` and every ``--hosts`` entry (what HTTPS clients
  check); usable as a server and a client certificate;
* ``client-<name>.pem`` / ``client-<name>-key.pem``: a client certificate (no node URI: it
  is refused on the raft port) for HTTP client-certificate authentication.

Keys are ECDSA P-256. A node starts with TLS given ``--tls-cert-file DIR/node1.pem
--tls-key-file DIR/node1-key.pem --tls-ca-file DIR/ca.pem``.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import ssl
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from beaver_vault.config_values import NODE_ID_RE
from beaver_vault.transport.tls import node_uri

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"


def add_certs_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "certs",
        help="make a CA and node certificates for TLS",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        allow_abbrev=False,
    )
    p.add_argument("--out", "-out", dest="out", required=True, help="directory for the files (created 0700)")
    p.add_argument("--nodes", "-nodes", dest="nodes", default="", help="comma-separated node ids")
    p.add_argument("--hosts", "-hosts", dest="hosts", default="", help="extra DNS names / IPs for node certificates")
    p.add_argument("--clients", "-clients", dest="clients", default="", help="comma-separated client names")
    p.add_argument("--days", "-days", dest="days", type=int, default=825, help="validity in days (default: 825)")
    p.set_defaults(handler=_cmd_certs)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _cmd_certs(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    nodes, hosts, clients = _split(args.nodes), _split(args.hosts), _split(args.clients)
    bad = [n for n in nodes + clients if not NODE_ID_RE.match(n)]
    if bad:
        print(f"beaver-vault certs: not a valid node or client name: {', '.join(bad)}", file=sys.stderr)
        return 2
    if not nodes and not clients:
        print("beaver-vault certs: give --nodes and/or --clients", file=sys.stderr)
        return 2
    if not 1 <= args.days <= 36500:
        print("beaver-vault certs: --days must be between 1 and 36500", file=sys.stderr)
        return 2
    written = make_certs(Path(args.out), nodes, hosts=hosts, clients=clients, days=args.days)
    for path in written:
        print(path)
    return 0


def make_certs(
    out: Path, nodes: Sequence[str], *, hosts: Sequence[str] = (), clients: Sequence[str] = (), days: int = 825
) -> list[Path]:
    """Write the CA (unless ``out`` has one) and the certificates; return the files written."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)
    written: list[Path] = []

    def write(path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, 0o600)
        written.append(path)

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    if (out / CA_CERT).exists() and (out / CA_KEY).exists():
        ca_cert = x509.load_pem_x509_certificate((out / CA_CERT).read_bytes())
        loaded = serialization.load_pem_private_key((out / CA_KEY).read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{out / CA_KEY} is not an EC key")
        ca_key = loaded
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Beaver-Vault cluster CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(now + datetime.timedelta(days=max(days, 3650)))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        write(out / CA_KEY, key_pem(ca_key))
        write(out / CA_CERT, ca_cert.public_bytes(serialization.Encoding.PEM))

    def issue(name: str, sans: list[x509.GeneralName], usages: list[x509.ObjectIdentifier], stem: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        write(out / f"{stem}-key.pem", key_pem(key))
        write(out / f"{stem}.pem", cert.public_bytes(serialization.Encoding.PEM))

    host_names: list[x509.GeneralName] = []
    for host in ["localhost", "127.0.0.1", "::1", *hosts]:
        try:
            host_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            host_names.append(x509.DNSName(host))
    for node in nodes:
        issue(
            node,
            [x509.UniformResourceIdentifier(node_uri(node)), *host_names],
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            node,
        )
    for client in clients:
        issue(client, [], [ExtendedKeyUsageOID.CLIENT_AUTH], f"client-{client}")
    return written


class ClusterTls:
    """``beaver-vault cluster --tls``: certificates for node1..nodeN in DATA_ROOT/certs."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.ca_file = directory / CA_CERT

    def server_flags(self, node_id: str) -> list[str]:
        d = self.directory
        return [
            "--tls-cert-file", str(d / f"{node_id}.pem"),
            "--tls-key-file", str(d / f"{node_id}-key.pem"),
            "--tls-ca-file", str(self.ca_file),
        ]  # fmt: skip

    def verify(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def cluster_tls(data_root: Path, nodes: int) -> ClusterTls:
    """Make (or reuse) the CA and node1..nodeN certificates under ``data_root/certs``."""
    directory = data_root / "certs"
    wanted = [f"node{i}" for i in range(1, nodes + 1)]
    missing = [n for n in wanted if not (directory / f"{n}.pem").exists()]
    if missing:
        os.umask(0o077)
        data_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        make_certs(directory, missing)
    return ClusterTls(directory)
