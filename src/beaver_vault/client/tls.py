"""TLS settings of the client library: trust the cluster's CA, optionally present a client certificate."""

from __future__ import annotations

import os
import ssl

PathLike = str | os.PathLike[str]


def verify_for(cacert: PathLike | None, cert: tuple[PathLike, PathLike] | None = None) -> ssl.SSLContext | bool:
    """httpx's ``verify``: True (the system's CAs) unless a CA file or a client certificate is given."""
    if cacert is None and cert is None:
        return True
    ctx = ssl.create_default_context(cafile=os.fspath(cacert) if cacert is not None else None)
    if cert is not None:
        ctx.load_cert_chain(os.fspath(cert[0]), os.fspath(cert[1]))
    return ctx
