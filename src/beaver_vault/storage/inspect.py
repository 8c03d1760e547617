"""``python -m beaver_vault.storage.inspect PATH``: print what a node's SQLite file holds.

Opens the database read-only (safe next to a running node: WAL lets readers in), and prints
the cluster id, hard state, log range, applied index, the first few keys, and every table
with its row count, columns and indexes (schema introspection is what ``sqlite-utils`` is
for; the node's own storage in ``sqlite.py`` uses plain ``sqlite3`` with explicit SQL).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from urllib.parse import quote

import sqlite_utils

from beaver_vault.raft.messages import EntryKind


def _kind(k: int) -> str:
    try:
        return EntryKind(k).name.lower()
    except ValueError:
        return f"kind {k}"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _table_lines(db: sqlite_utils.Database) -> list[str]:
    out: list[str] = []
    for table in sorted(db.tables, key=lambda t: t.name):
        columns = ", ".join(f"{c.name} {c.type}".strip() for c in table.columns)
        out.append(f"  {table.name} ({table.count} rows): {columns}")
        for index in sorted(table.indexes, key=lambda i: i.name):
            if not index.name.startswith("sqlite_autoindex"):
                out.append(f"    index {index.name} ({', '.join(index.columns)})")
    return out


def inspect(path: str, *, keys: int = 10, prefix: str = "", width: int = 80) -> str:
    if not Path(path).exists():
        raise FileNotFoundError(path)
    conn = sqlite3.connect(f"file:{quote(str(Path(path).resolve()))}?mode=ro", uri=True)
    try:
        db = sqlite_utils.Database(conn)
        meta = next(db["meta"].rows_where("id = 0"))
        hs = next(db["hard_state"].rows_where("id = 0"))
        # Rows at or below the snapshot index are compacted (deleted later in batches): not the log.
        snap_row = conn.execute("SELECT idx FROM snapshot_meta WHERE id = 0").fetchone() if db["snapshot_meta"].exists() else None
        snap = int(snap_row[0]) if snap_row else 0
        lo, hi, n = conn.execute("SELECT min(idx), max(idx), count(*) FROM log WHERE idx > ?", (snap,)).fetchone()
        last_term = conn.execute("SELECT term FROM log WHERE idx > ? ORDER BY idx DESC LIMIT 1", (snap,)).fetchone()
        kinds = {_kind(k): c for k, c in conn.execute("SELECT kind, count(*) FROM log WHERE idx > ? GROUP BY kind", (snap,))}
        nkeys = db["kv"].count
        lines = [
            f"file:          {path}",
            f"schema:        {conn.execute('PRAGMA user_version').fetchone()[0]}",
            f"cluster_id:    {meta['cluster_id']}",
            f"hard state:    term={hs['term']} vote={hs['vote']} commit={hs['commit_index']}",
            f"log:           {'empty' if n == 0 else f'[{lo}..{hi}] {n} entries, last term {last_term[0]}'}"
            + (f" (by kind: {kinds})" if kinds else ""),
            f"applied_index: {meta['applied_index']}",
            f"keys:          {nkeys}",
        ]
        rows = conn.execute(
            "SELECT key, value, create_revision, mod_revision, version FROM kv WHERE substr(key, 1, ?) = ? "
            "ORDER BY key LIMIT ?",
            (len(prefix), prefix, keys),
        ).fetchall()
        for k, v, c, m, ver in rows:
            lines.append(f"  {k!r}: {_short(v, width)}  (create={c} mod={m} version={ver})")
        if nkeys > len(rows) and not prefix:
            lines.append(f"  ... {nkeys - len(rows)} more")
        lines.append("tables:")
        lines.extend(_table_lines(db))
        return "\n".join(lines)
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m beaver_vault.storage.inspect", description=__doc__)
    ap.add_argument("path", help="the node's SQLite database file")
    ap.add_argument("--keys", type=int, default=10, help="how many keys to show (default 10)")
    ap.add_argument("--prefix", default="", help="only show keys with this prefix")
    args = ap.parse_args(argv)
    try:
        print(inspect(args.path, keys=args.keys, prefix=args.prefix))
    except (FileNotFoundError, sqlite3.Error, StopIteration) as e:
        print(f"cannot inspect {args.path}: {e!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
