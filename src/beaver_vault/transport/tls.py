"""TLS contexts and node identities for the raft port (mutual TLS) and for node-to-node HTTP.

A node certificate is signed by the cluster's CA and names its node id twice: in the
subject's common name and, authoritatively, in one subjectAltName URI
``beaver-vault://node/<id>`` (``beaver-vault certs`` makes them). On the raft port both sides
present their certificate and verify the other's against the CA only (``CERT_REQUIRED``); host
names are not what identifies a node, its id is: the dialling side checks that the listener's
certificate names the node it meant to reach, the listening side takes the dialler's id from
its certificate and the transport refuses any message whose ``src`` is another id. A
certificate without the node URI (a client certificate of the same CA) is refused.

For HTTP between nodes (forwarding to the leader, the UI's peer fan-out, joins) the usual
HTTPS rules apply (CA + host name), and the node presents its certificate as a client
certificate so a cluster that requires client certificates still works.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

NODE_URI_PREFIX: Final = "beaver-vault://node/"


def node_uri(node_id: str) -> str:
    return NODE_URI_PREFIX + node_id


def node_id_of(peercert: dict[str, Any] | None) -> str | None:
    """The node id a verified peer certificate names (its one node URI), or None."""
    if not peercert:
        return None
    ids = [
        value[len(NODE_URI_PREFIX) :]
        for kind, value in peercert.get("subjectAltName", ())
        if kind == "URI" and isinstance(value, str) and value.startswith(NODE_URI_PREFIX)
    ]
    if len(ids) != 1 or not ids[0]:
        return None
    return ids[0]


@dataclass(frozen=True, slots=True)
class PeerTls:
    """The two contexts of the raft port: accepting (server) and dialling (client)."""

    server: ssl.SSLContext
    client: ssl.SSLContext


def _base(purpose: ssl.Purpose, cert_file: Path, key_file: Path, ca_file: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(purpose, cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


def peer_tls(cert_file: Path, key_file: Path, ca_file: Path) -> PeerTls:
    """Contexts for the raft port: a certificate required both ways, verified by the CA only."""
    server = _base(ssl.Purpose.CLIENT_AUTH, cert_file, key_file, ca_file)
    server.verify_mode = ssl.CERT_REQUIRED
    client = _base(ssl.Purpose.SERVER_AUTH, cert_file, key_file, ca_file)
    client.check_hostname = False  # the node id in the certificate is checked instead
    client.verify_mode = ssl.CERT_REQUIRED
    return PeerTls(server=server, client=client)


def https_client_context(ca_file: Path, cert_file: Path | None = None, key_file: Path | None = None) -> ssl.SSLContext:
    """For HTTPS to other nodes (or for clients): the CA, host names checked, and our
    certificate as a client certificate when given."""
    ctx = _base_client(ca_file)
    if cert_file is not None and key_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


def _base_client(ca_file: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
