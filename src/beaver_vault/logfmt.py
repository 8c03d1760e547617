"""Log output of ``beaver-vault server``: ``--log-format text`` (default) or ``json``.

``text`` is one human line per event (time, node id, level, logger, message). ``json`` is one
JSON object per line, for log shippers::

    {"time": "2026-12-02T21:30:00.123Z", "level": "INFO", "node": "node1", "term": 3,
     "logger": "beaver_vault.node", "event": "role_changed", "message": "node1: now leader in term 3",
     "fields": {"role": "leader", "term": 3}}

``event`` is the short name a log call gives in ``extra={"event": ..., "fields": {...}}``;
calls without one use their message as the event. ``term`` is the node's current Raft term
when the record is written (``None`` before the node runs). Exceptions come as ``exception``
(the formatted traceback).

Why text stays the default everywhere, not only on a terminal: a format that changes when
stderr is redirected (``2>node.log``, ``| less``, a test harness) surprises people reading
and grepping those files, and the shipped deployment files (``deploy/``) ask for ``json``
explicitly where logs are collected by machines.

What is never logged: request bodies and stored values (only keys, ids, addresses, indexes).
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from collections.abc import Callable
from typing import Any


class _TermSource:
    """Where the current term comes from (set once the node's runtime exists)."""

    get: Callable[[], int] | None = None


term_source = _TermSource()


def set_term_source(get: Callable[[], int] | None) -> None:
    term_source.get = get


def _current_term() -> int | None:
    get = term_source.get
    if get is None:
        return None
    try:
        return get()
    except Exception:  # noqa: BLE001 - a log line must never fail because the node is mid-change
        return None


class JsonFormatter(logging.Formatter):
    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        message = record.getMessage()
        event = getattr(record, "event", None)
        obj: dict[str, Any] = {
            "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "node": self.node_id,
            "term": _current_term(),
            "logger": record.name,
            "event": event if isinstance(event, str) and event else message,
        }
        if isinstance(event, str) and event:
            obj["message"] = message
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            obj["fields"] = {str(k): v for k, v in fields.items()}
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            obj["exception"] = record.exc_text
        return json.dumps(obj, ensure_ascii=False, default=str, separators=(",", ":"))


def configure_logging(level: str, tag: str, log_format: str = "text") -> None:
    """Send every log record of the process to stderr, one line each, in ``log_format``."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(tag))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {tag} %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # httpx logs every request at INFO: too chatty for the join loop and the cluster's polling.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
