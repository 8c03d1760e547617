"""Secrets at the edge: password hashing (scrypt), bearer and join tokens (random, stored hashed).

Nothing here is replicated or stored by itself: the API hashes, then proposes the digest
(``kv.auth``), so no plaintext secret reaches the Raft log, the database, a snapshot, a backup
or a log line.

* A password is hashed with ``hashlib.scrypt`` (N=2**14, r=8, p=1: about 16 MiB and tens of
  milliseconds) and a random 16-byte salt per user; it is compared with
  ``hmac.compare_digest``. Hashing runs in a worker thread so the event loop keeps serving.
* An unknown user costs the same scrypt as a known one (against a dummy hash made once), so
  the time of a refusal does not tell which user names exist.
* A verified (user, password) pair is remembered in memory only as an HMAC under a key drawn
  at start-up and bound to the stored hash, so HTTP Basic on every request does not cost a
  scrypt each time; a password change (a new stored hash) misses the cache.
* A bearer token is ``bv_`` + 43 URL-safe characters (32 random bytes); the cluster stores
  only its SHA-256 (a token has full entropy, so a slow hash adds nothing). A join token has
  the same shape with the prefix ``bvj_``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from typing import Any

import trio

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
TOKEN_PREFIX = "bv_"
JOIN_TOKEN_PREFIX = "bvj_"
MAX_PASSWORD_BYTES = 1024
MIN_PASSWORD_CHARS = 8
_CACHE_MAX = 4096


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


def hash_password(password: str) -> dict[str, Any]:
    """The stored form of ``password``: ``{alg, n, r, p, salt, hash}`` (hex)."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return {"alg": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt.hex(), "hash": digest.hex()}


async def hash_password_async(password: str) -> dict[str, Any]:
    return await trio.to_thread.run_sync(hash_password, password)


def check_new_password(password: object) -> str | None:
    """Why ``password`` may not be set (None: it may)."""
    if not isinstance(password, str):
        return "password must be a string"
    if len(password) < MIN_PASSWORD_CHARS:
        return f"password must have at least {MIN_PASSWORD_CHARS} characters"
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
        return f"password must be at most {MAX_PASSWORD_BYTES} bytes"
    return None


class PasswordChecker:
    """Verifies passwords against stored hashes, with a bounded in-memory cache of successes."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._ok: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._dummy: dict[str, Any] | None = None

    async def burn(self, password: str) -> None:
        """Spend what a real check costs, for a user that does not exist."""
        if self._dummy is None:
            self._dummy = await hash_password_async(secrets.token_hex(16))
        await self.verify("\0unknown", password, self._dummy)

    def _mac(self, user: str, password: str) -> bytes:
        return hmac.new(self._key, user.encode() + b"\0" + password.encode("utf-8", "surrogatepass"), "sha256").digest()

    async def verify(self, user: str, password: str, stored: Any) -> bool:
        if not isinstance(stored, dict) or stored.get("alg") != "scrypt":
            return False
        if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD_BYTES:
            return False
        slot = (user, str(stored.get("hash")))
        mac = self._mac(user, password)
        cached = self._ok.get(slot)
        if cached is not None:
            return hmac.compare_digest(cached, mac)
        try:
            salt, expected = bytes.fromhex(stored["salt"]), bytes.fromhex(stored["hash"])
            n, r, p = int(stored["n"]), int(stored["r"]), int(stored["p"])
            got = await trio.to_thread.run_sync(_scrypt, password, salt, n, r, p)
        except (KeyError, TypeError, ValueError):
            return False
        if not hmac.compare_digest(got, expected):
            return False
        self._ok[slot] = mac
        if len(self._ok) > _CACHE_MAX:
            self._ok.popitem(last=False)
        return True


def new_token(prefix: str = TOKEN_PREFIX) -> tuple[str, str]:
    """(the token to hand out once, its SHA-256 hex digest to store)."""
    token = prefix + secrets.token_urlsafe(32)
    return token, token_digest(token)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
