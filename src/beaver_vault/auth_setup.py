"""Start-up of authentication on one node: the API's options and the first admin.

How the first admin comes to exist (bootstrap). A cluster with ``auth_enabled`` and no user
yet accepts nothing but ``/health`` and ``/ready``. The node started with the first admin's
password (``auth_admin_password_file``: its first line; or the environment variable
``BEAVER_VAULT_ADMIN_PASSWORD``) waits until it leads, hashes the password (scrypt) and
proposes ``kv.auth``'s ``bootstrap`` command for the user ``admin``. The state machine creates
that user only if NO user exists, so the step is idempotent: a restart, several nodes given the
password, or a cluster whose admin was renamed or whose password was changed later are all left
as they are. Only the hash is in the log, the database and snapshots; the password is never
logged. The file may be deleted once the cluster has the user.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import trio

from beaver_vault.api.auth_guard import AuthOptions
from beaver_vault.api.passwords import check_new_password, hash_password_async
from beaver_vault.config import ADMIN_PASSWORD_ENV, Config
from beaver_vault.errors import BeaverVaultError
from beaver_vault.kv.auth import auth_command
from beaver_vault.node.runtime import NodeRuntime

log = logging.getLogger("beaver_vault.auth")

ADMIN_USER = "admin"


class AuthSetupError(ValueError):
    """The bootstrap password cannot be read or is not acceptable. For humans."""


def auth_options(cfg: Config) -> AuthOptions:
    return AuthOptions(
        enabled=cfg.auth_enabled,
        health_public=cfg.auth_health_public,
        metrics_public=cfg.auth_metrics_public,
        failures_burst=cfg.auth_failures_burst,
        failures_per_s=cfg.auth_failures_per_s,
    )


def admin_password(cfg: Config, env: dict[str, str] | None = None) -> str | None:
    """The bootstrap password from the file or the environment (the file wins); None: none given."""
    environ = dict(os.environ) if env is None else env
    if cfg.auth_admin_password_file is not None:
        try:
            text = Path(cfg.auth_admin_password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise AuthSetupError(f"cannot read auth_admin_password_file {str(cfg.auth_admin_password_file)!r}: {e}") from None
        password = text.splitlines()[0] if text.splitlines() else ""
    else:
        password = environ.get(ADMIN_PASSWORD_ENV, "")
        if not password:
            return None
    why = check_new_password(password)
    if why is not None:
        raise AuthSetupError(f"the first admin's password: {why}")
    return password


async def bootstrap_admin(runtime: NodeRuntime, password: str, *, poll_s: float = 0.2) -> None:
    """Create the user ``admin`` once this node leads, unless the cluster has a user (see above)."""
    hashed = None
    while True:
        if runtime.auth_scan("user"):
            log.info("authentication: the cluster has users; no bootstrap needed")
            return
        if runtime.status().role == "leader":
            if hashed is None:
                hashed = await hash_password_async(password)
            try:
                result = await runtime.write(auth_command("bootstrap", name=ADMIN_USER, password=hashed), timeout_s=5.0)
            except BeaverVaultError as e:
                log.info("authentication: bootstrap of the first admin not done yet (%s); retrying", type(e).__name__)
            else:
                if result.get("created"):
                    log.warning("authentication: created the first admin user %r (bootstrap)", ADMIN_USER)
                return
        await trio.sleep(poll_s)
