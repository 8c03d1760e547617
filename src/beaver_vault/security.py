"""Start-up security of one node: file modes, TLS contexts, and what the log must say.

Rules (see also README "Security"):

* The process runs with umask 0o077, so everything it creates (the database, SQLite's -wal
  and -shm files, snapshots, backups) is private to its user. The data directory is made
  0700 and, at every start, an existing one (and the files in it) loses any group/other
  permission bits: a directory created 0777 by someone else does not stay so.
* Listening beyond loopback needs TLS and authentication (``--auth-enabled``): ``config``
  refuses a non-loopback ``bind_host`` without both (exit 2) unless ``--insecure`` is given,
  and the log then says plainly what is exposed.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
from pathlib import Path

from beaver_vault.config import Config, is_loopback_host
from beaver_vault.transport.tls import PeerTls, https_client_context, peer_tls

log = logging.getLogger("beaver_vault.security")

PRIVATE_UMASK = 0o077


def secure_data_dir(path: Path) -> list[Path]:
    """Create ``path`` 0700 (parents as needed) or tighten an existing one and the files in it
    (recursively) to owner-only. Returns the paths whose mode was changed."""
    os.umask(PRIVATE_UMASK)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    fixed: list[Path] = []
    for current, dirs, files in os.walk(path):
        for entry in [current, *(os.path.join(current, f) for f in files)]:
            st = os.lstat(entry)
            if stat.S_ISLNK(st.st_mode):
                continue
            if st.st_mode & 0o077:
                os.chmod(entry, stat.S_IMODE(st.st_mode) & 0o700)
                fixed.append(Path(entry))
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(current, d))]
    return fixed


def log_exposure(cfg: Config) -> None:
    """Say in the log what this node exposes (called once at start)."""
    if is_loopback_host(cfg.bind_host):
        if not cfg.tls_enabled and not cfg.auth_enabled:
            log.info("development mode: loopback only (%s), no TLS, no authentication", cfg.bind_host)
        elif not cfg.auth_enabled:
            log.info("loopback only (%s), TLS on, no authentication", cfg.bind_host)
        return
    if cfg.tls_enabled and cfg.auth_enabled:
        log.info("listening on %s with TLS and authentication", cfg.bind_host)
        return
    if not cfg.auth_enabled:
        log.warning(
            "--insecure: listening beyond loopback on %s WITHOUT authentication: anyone who reaches ports %d "
            "(HTTP) and %d (raft) can read, write and change the cluster",
            cfg.bind_host,
            cfg.http_port,
            cfg.raft_port,
        )
    if not cfg.tls_enabled:
        log.warning(
            "--insecure: listening beyond loopback on %s WITHOUT TLS: traffic, passwords and tokens are not "
            "protected, and node identities are not checked",
            cfg.bind_host,
        )


def peer_contexts(cfg: Config) -> PeerTls | None:
    """The raft port's mutual-TLS contexts, or None without TLS. Raises OSError/ssl.SSLError
    for unreadable or mismatched files."""
    if cfg.tls_cert_file is None or cfg.tls_key_file is None or cfg.tls_ca_file is None:
        return None
    return peer_tls(cfg.tls_cert_file, cfg.tls_key_file, cfg.tls_ca_file)


def https_context(cfg: Config) -> ssl.SSLContext | None:
    """For this node's own HTTPS calls to other nodes (forwarding, UI fan-out, join): the CA,
    and the node certificate as client certificate. None without TLS."""
    if cfg.tls_ca_file is None:
        return None
    return https_client_context(cfg.tls_ca_file, cfg.tls_cert_file, cfg.tls_key_file)


def hypercorn_verify_mode(cfg: Config) -> ssl.VerifyMode:
    return {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}[cfg.http_client_auth]
