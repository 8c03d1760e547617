"""What the clients can ask: the typed results, and one :class:`Call` builder per operation
(method, path, query, body, headers, and how to parse a 2xx answer). Sans I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from beaver_vault.client._retry import API, Call, Reply, new_idempotency_key, normalize_endpoints
from beaver_vault.client.errors import ClusterError
from beaver_vault.jsontext import compact_encoder

NodeList = list[dict[str, Any]]
JSON_HEADERS: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)


# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyValue:
    """A key with its value and revisions (``get_meta``, listings)."""

    key: str
    value: Any
    create_revision: int
    mod_revision: int
    version: int


@dataclass(frozen=True, slots=True)
class PutResult:
    key: str
    revision: int
    created: bool


@dataclass(frozen=True, slots=True)
class DeleteResult:
    key: str
    deleted: bool
    revision: int | None


@dataclass(frozen=True, slots=True)
class DeletePrefixResult:
    prefix: str
    deleted: int
    revision: int | None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing. ``items`` (or ``keys`` with ``keys_only``) in key order; ``count``
    is the total under the prefix; ``revision`` the store revision the page was read at;
    ``next_after`` the ``after`` of the next page when ``more``."""

    items: tuple[KeyValue, ...]
    keys: tuple[str, ...]
    count: int
    revision: int
    more: bool
    next_after: str | None


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool
    results: list[Any]
    revision: int


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change: ``type`` is ``"put"`` or ``"delete"`` (``value`` is ``None`` for a delete)."""

    type: str
    key: str
    value: Any
    revision: int


def _obj(reply: Reply) -> dict[str, Any]:
    body = reply.json()
    if not isinstance(body, dict):
        raise ClusterError(f"{reply.endpoint}: expected a JSON object, got {body!r:.200}", endpoint=reply.endpoint)
    return body


def _int(body: Mapping[str, Any], *names: str, default: int = 0) -> int:
    for name in names:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return default


def _opt_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def key_value_from(item: Mapping[str, Any]) -> KeyValue:
    return KeyValue(
        key=str(item.get("key", "")),
        value=item.get("value"),
        create_revision=_int(item, "create_revision"),
        mod_revision=_int(item, "mod_revision", "revision"),
        version=_int(item, "version"),
    )


# --- call builders ------------------------------------------------------------------------------


def kv_path(key: str) -> str:
    """The URL path of ``key``, spelled so that it reaches the server byte for byte: every
    character but unreserved ones and ``/`` percent-encoded (UTF-8), and ``.``/``..`` segments
    spelled ``%2E`` (URL libraries, httpx included, would remove them; the server reads ``%2E``
    as ``.``: see "Keys" in the README)."""
    if not key:
        raise ValueError("a key must not be empty")
    parts = quote(key, safe="/").split("/")
    return f"{API}/kv/" + "/".join(p.replace(".", "%2E") if p in (".", "..") else p for p in parts)


_VALUE_JSON = compact_encoder(allow_nan=True)


def encode_json(value: Any) -> bytes:
    return _VALUE_JSON(value).encode("utf-8")


def ttl_param(ttl: int | float | str) -> str:
    """``30`` -> ``"30s"``; a string (``"500ms"``, ``"2m"``) is passed as is."""
    if isinstance(ttl, str):
        return ttl
    if isinstance(ttl, bool) or ttl <= 0:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
    return f"{int(ttl)}s" if float(ttl).is_integer() else f"{round(ttl * 1000)}ms"


def get_call(key: str) -> Call[Any]:
    return Call("GET", kv_path(key), lambda r: r.json(), op="get", key=key)


def get_meta_call(key: str) -> Call[KeyValue]:
    return Call("GET", kv_path(key), lambda r: key_value_from(_obj(r)), params=(("meta", "true"),), op="get", key=key)


def put_call(
    key: str,
    value: Any,
    *,
    if_revision: int | None = None,
    if_absent: bool = False,
    ttl: int | float | str | None = None,
) -> Call[PutResult]:
    if if_revision is not None and if_absent:
        raise ValueError("if_revision and if_absent exclude each other")
    headers = list(JSON_HEADERS)
    if if_revision is not None:
        headers.append(("If-Match", f'"{int(if_revision)}"'))
    if if_absent:
        headers.append(("If-None-Match", "*"))
    params = (("ttl", ttl_param(ttl)),) if ttl is not None else ()

    def parse(r: Reply) -> PutResult:
        body = _obj(r)
        return PutResult(str(body.get("key", key)), _int(body, "revision", "mod_revision"), bool(body.get("created")))

    return Call(
        "PUT",
        kv_path(key),
        parse,
        params=params,
        body=encode_json(value),
        headers=tuple(headers),
        write=True,
        idempotency_key=new_idempotency_key(),
        op="put",
        key=key,
    )


def delete_call(key: str, *, if_revision: int | None = None) -> Call[DeleteResult]:
    headers = (("If-Match", f'"{int(if_revision)}"'),) if if_revision is not None else ()

    def parse(r: Reply) -> DeleteResult:
        body = _obj(r)
        return DeleteResult(str(body.get("key", key)), bool(body.get("deleted")), _opt_int(body, "revision"))

    return Call(
        "DELETE",
        kv_path(key),
        parse,
        headers=headers,
        write=True,
        idempotency_key=new_idempotency_key(),
        op="delete",
        key=key,
    )


def list_call(
    prefix: str = "", *, limit: int | None = None, after: str | None = None, keys_only: bool = False
) -> Call[Page]:
    params: list[tuple[str, str]] = [("prefix", prefix)]
    if limit is not None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        params.append(("limit", str(limit)))
    if after is not None:
        params.append(("after", after))
    if keys_only:
        params.append(("keys_only", "true"))

    def parse(r: Reply) -> Page:
        body = _obj(r)
        raw_items = body.get("items") or []
        raw_keys = body.get("keys")
        items = tuple(key_value_from(i) for i in raw_items if isinstance(i, dict))
        if isinstance(raw_keys, list):
            keys = tuple(str(k) for k in raw_keys)
        else:
            keys = tuple(i.key for i in items)
        next_after = body.get("next_after")
        return Page(
            items=items,
            keys=keys,
            count=_int(body, "count", default=len(keys)),
            revision=_int(body, "revision"),
            more=bool(body.get("more")),
            next_after=next_after if isinstance(next_after, str) else (keys[-1] if keys and body.get("more") else None),
        )

    return Call("GET", f"{API}/kv", parse, params=tuple(params), op="list")


def delete_prefix_call(prefix: str) -> Call[DeletePrefixResult]:
    def parse(r: Reply) -> DeletePrefixResult:
        body = _obj(r)
        return DeletePrefixResult(prefix, _int(body, "deleted", "count"), _opt_int(body, "revision"))

    return Call(
        "DELETE",
        f"{API}/kv",
        parse,
        params=(("prefix", prefix), ("confirm", "true")),
        write=True,
        idempotency_key=new_idempotency_key(),
        op="delete_prefix",
    )


def txn_call(
    compare: Sequence[Mapping[str, Any]], success: Sequence[Mapping[str, Any]], failure: Sequence[Mapping[str, Any]]
) -> Call[TxnResult]:
    doc = {"compare": [dict(c) for c in compare], "success": [dict(o) for o in success]}
    doc["failure"] = [dict(o) for o in failure]

    def parse(r: Reply) -> TxnResult:
        body = _obj(r)
        results = body.get("results")
        return TxnResult(
            bool(body.get("succeeded")), list(results) if isinstance(results, list) else [], _int(body, "revision")
        )

    return Call(
        "POST",
        f"{API}/txn",
        parse,
        body=encode_json(doc),
        headers=JSON_HEADERS,
        write=True,
        idempotency_key=new_idempotency_key(),
        op="txn",
    )


def status_call(endpoint: str | None = None) -> Call[dict[str, Any]]:
    return Call("GET", f"{API}/status", _obj, pinned=normalize_endpoints([endpoint])[0] if endpoint else None)


def _node_list(r: Reply) -> list[dict[str, Any]]:
    body = r.json()
    if isinstance(body, dict):
        for name in ("nodes", "members"):
            if isinstance(body.get(name), list):
                body = body[name]
                break
    if not isinstance(body, list):
        raise ClusterError(f"{r.endpoint}: expected a list of nodes, got {body!r:.200}", endpoint=r.endpoint)
    return [n for n in body if isinstance(n, dict)]


def members_call() -> Call[list[dict[str, Any]]]:
    return Call("GET", f"{API}/raft/nodes", _node_list)


def join_call(
    node_id: str, raft_address: str, *, force: bool = False, update_address: bool = False
) -> Call[list[dict[str, Any]]]:
    body: dict[str, Any] = {"NodeID": node_id, "RaftAddress": raft_address}
    if force:
        body["Force"] = True
    if update_address:
        body["UpdateAddress"] = True
    return Call(
        "POST",
        f"{API}/raft/join",
        _node_list,
        body=encode_json(body),
        headers=JSON_HEADERS,
        write=True,
        idempotency_key=new_idempotency_key(),
    )


def remove_call(node_id: str, *, force: bool = False) -> Call[list[dict[str, Any]]]:
    return Call(
        "POST",
        f"{API}/raft/remove",
        _node_list,
        body=encode_json({"NodeID": node_id, "Force": force}),
        headers=JSON_HEADERS,
        write=True,
        idempotency_key=new_idempotency_key(),
    )


WHAT_IF_ROUTES = {"join": "join", "remove": "remove", "transfer": "transfer-leadership"}


def what_if_call(kind: str, node_id: str | None, raft_address: str | None = None) -> Call[dict[str, Any]]:
    """``?dry_run=true``: what a join/remove/transfer would do (voters after it, quorum, which
    voters are reachable, whether a reachable quorum is kept, data to send); changes nothing."""
    if kind not in WHAT_IF_ROUTES:
        raise ValueError(f"kind must be one of {', '.join(WHAT_IF_ROUTES)}")
    body: dict[str, Any] = {} if node_id is None else {"NodeID": node_id}
    if kind == "join":
        body["RaftAddress"] = raft_address or ""
    return Call(
        "POST",
        f"{API}/raft/{WHAT_IF_ROUTES[kind]}",
        _obj,
        params=(("dry_run", "true"),),
        body=encode_json(body),
        headers=JSON_HEADERS,
    )


def transfer_leadership_call(node_id: str | None = None, *, force: bool = False) -> Call[dict[str, Any]]:
    body: dict[str, Any] = {} if node_id is None else {"NodeID": node_id}
    if force:
        body["Force"] = True
    return Call(
        "POST",
        f"{API}/raft/transfer-leadership",
        _obj,
        body=encode_json(body),
        headers=JSON_HEADERS,
        write=True,
        idempotency_key=new_idempotency_key(),
    )
