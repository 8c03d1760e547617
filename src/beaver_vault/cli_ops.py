"""Operator commands of ``beaver-vault``: ``backup``, ``restore`` and ``server --print-config``.

* ``beaver-vault backup [--endpoints URL,...] [--consistency stale] FILE`` saves
  ``GET /api/v1/backup`` of the first node that answers: streamed to a temporary file next to
  FILE, fsynced, checked (header, SHA-256 trailer, counts), then renamed over FILE, so FILE is
  always either absent, the previous backup or a complete new one. A progress bar is drawn on
  stderr when it is a terminal. Exit codes: 0 saved; 2 usage; 3 no node gave a complete backup.
* ``beaver-vault restore FILE --node-id ID --data-dir DIR [--raft-port ... | --config F]``
  seeds the first node of a NEW cluster from a backup: the whole file is checked before
  anything is written, DIR must be absent or empty, and the new storage is built in a sibling
  temporary directory that is renamed to DIR only once complete (a failure leaves DIR as it
  was). The node gets a fresh cluster id, the backup's state at its revision (every key with
  its revisions and version), and a log that continues above that revision. It takes the
  server's settings (flags, environment, ``--config``) so the addresses it records are the
  ones it will advertise; start it with the same settings, then join the other nodes to it as
  usual. Exit codes: 0 restored; 1 refused (damaged or truncated file, DIR not empty); 2 usage.
* ``beaver-vault server ... --print-config`` prints every setting as YAML (usable as a config
  file) with, beside each, where its value came from (default, file, environment, flag), and
  exits 0; settings that look like secrets are redacted.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import httpx
import yaml

from beaver_vault.config import (
    SECRET_SETTINGS,
    SETTINGS,
    Config,
    ConfigError,
    Setting,
    config_file_from,
    load_config,
    read_yaml,
)

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

BACKUP_PATH = "/api/v1/backup"
ROWS_HEADER = "X-Beaver-Vault-Backup-Rows"
REVISION_HEADER = "X-Beaver-Vault-Revision"
ENDPOINTS_ENV = "BEAVER_VAULT_ENDPOINTS"
DEFAULT_ENDPOINT = "http://127.0.0.1:8000"
REDACTED = "<redacted>"
# Names that suggest secret contents; a *_file / *_path setting names a file and is shown.
_SECRET_NAME = re.compile(r"(password|passphrase|secret|token|credential|api_key|private_key)(?!.*_(file|path|dir)$)")


def add_ops_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], server: argparse.ArgumentParser) -> None:
    """Register ``backup`` and ``restore``, and ``--print-config`` on ``server``."""
    server.add_argument(
        "--print-config",
        action="store_true",
        help="print every setting, its value and where it came from (default, file, environment, flag), then exit",
    )

    backup = sub.add_parser(
        "backup",
        help="save a consistent backup of the cluster's data to a file",
        description=(
            "Download GET /api/v1/backup from the first node that answers (a consistent copy of the "
            "applied state at one revision, with a SHA-256 checksum) into FILE: written to a temporary "
            "file, fsynced, checked, then renamed. Exit codes: 0 saved, 2 usage, 3 no node gave a "
            "complete backup."
        ),
        allow_abbrev=False,
    )
    backup.add_argument("file", metavar="FILE")
    backup.add_argument(
        "--endpoints",
        metavar="URL,URL,...",
        default=None,
        help=f"node HTTP URLs, tried in order (default: ${ENDPOINTS_ENV} or {DEFAULT_ENDPOINT})",
    )
    backup.add_argument(
        "--consistency",
        choices=("linearizable", "stale"),
        default="linearizable",
        help="linearizable (default: includes every write acknowledged before it) or stale (the node's own copy)",
    )
    backup.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds without data before giving up on a node (default: 30)")
    backup.add_argument("--quiet", action="store_true", help="no progress bar, only the result line")
    backup.set_defaults(handler=cmd_backup)

    restore = sub.add_parser(
        "restore",
        help="seed the first node of a new cluster from a backup file",
        description=(
            "Check FILE completely, then create the data directory of the first node of a NEW cluster "
            "holding the backup's state at its revision. Takes the server's settings (--node-id, "
            "--data-dir, ports, hosts, --config, BEAVER_VAULT_*), so start the node with the same ones; "
            "other nodes then join it as usual. The data directory must be absent or empty. Exit "
            "codes: 0 restored, 1 refused (damaged or truncated file, data directory not empty), 2 usage."
        ),
        allow_abbrev=False,
    )
    restore.add_argument("file", metavar="FILE")
    restore.add_argument("--config", "-config", dest="config", metavar="FILE", default=None, help="YAML file of settings")
    for setting in SETTINGS:
        dashed = setting.name.replace("_", "-")
        restore.add_argument(
            "--" + dashed, "-" + dashed, dest=setting.name, metavar=setting.name.upper(), default=None, help=setting.help
        )
    restore.set_defaults(handler=cmd_restore)


# --- server --print-config ----------------------------------------------------------------------


def is_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name.lower()))


def effective_settings(
    flags: Mapping[str, object], env: Mapping[str, str], settings: tuple[Setting, ...] = SETTINGS
) -> tuple[Config, Path | None, list[tuple[str, Any, str]]]:
    """(the config, the YAML file used, [(name, value, source)]) for every setting, in table order.
    Raises ``ConfigError`` exactly as the server would."""
    config_file = config_file_from(flags, env)
    cfg = load_config(flags=flags, env=env, config_file=config_file)
    in_file = read_yaml(config_file) if config_file is not None else {}
    rows: list[tuple[str, Any, str]] = []
    for s in settings:
        if flags.get(s.name) is not None:
            source = f"flag {s.flag}"
        elif s.env_var in env:
            source = f"environment {s.env_var}"
        elif s.name in in_file and in_file[s.name] is not None:
            source = f"file {config_file}"
        elif s.name in ("data_dir", "advertise_host"):
            source = "default (derived: " + ("./data/<node_id>" if s.name == "data_dir" else "from bind_host") + ")"
        else:
            source = "default"
        value = getattr(cfg, s.name, None)
        rows.append((s.name, REDACTED if is_secret(s.name) and value is not None else value, source))
    return cfg, config_file, rows


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    text: str = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()


def print_config(flags: Mapping[str, object], env: Mapping[str, str], out: TextIO) -> int:
    try:
        _cfg, config_file, rows = effective_settings(flags, env)
    except ConfigError as e:
        print(f"beaver-vault: configuration error: {e}", file=sys.stderr)
        return EXIT_USAGE
    source = "none" if config_file is None else str(config_file)
    print(f"# beaver-vault effective configuration (config file: {source})", file=out)
    print("# precedence, lowest to highest: default < file < environment < flag", file=out)
    body = [
        (f"{name}: {_yaml_scalar(value) if value is None or name not in SECRET_SETTINGS else '(hidden)'}", src)
        for name, value, src in rows
    ]
    width = max(len(line) for line, _ in body)
    for line, src in body:
        print(f"{line.ljust(width)}  # {src}", file=out)
    return EXIT_OK


# --- backup -------------------------------------------------------------------------------------


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total_rows: int | None, enabled: bool, out: TextIO = sys.stderr) -> None:
        self.total = total_rows
        self.enabled = enabled
        self.out = out
        self.last = 0.0

    def update(self, rows: int, nbytes: int, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self.last < 0.1:
            return
        self.last = now
        mib = nbytes / (1024 * 1024)
        if self.total:
            frac = min(1.0, rows / self.total)
            bar = "#" * int(frac * 30)
            line = f"\rbackup [{bar:<30}] {frac * 100:5.1f}%  {rows:,}/{self.total:,} rows  {mib:.1f} MiB"
        else:
            line = f"\rbackup {rows:,} rows  {mib:.1f} MiB"
        self.out.write(line + ("\n" if final else ""))
        self.out.flush()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cmd_backup(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from beaver_vault.storage.backup import BackupError, verify_backup

    target = Path(args.file)
    if target.is_dir():
        print(f"beaver-vault backup: {target} is a directory; give a file name", file=sys.stderr)
        return EXIT_USAGE
    if not target.parent.is_dir():
        print(f"beaver-vault backup: directory {target.parent} does not exist", file=sys.stderr)
        return EXIT_USAGE
    if not args.timeout > 0:
        print("beaver-vault backup: --timeout must be positive", file=sys.stderr)
        return EXIT_USAGE
    endpoints = [e.strip().rstrip("/") for e in (args.endpoints or env.get(ENDPOINTS_ENV) or DEFAULT_ENDPOINT).split(",")]
    endpoints = [e for e in endpoints if e]
    if not endpoints:
        print("beaver-vault backup: no endpoints given", file=sys.stderr)
        return EXIT_USAGE
    show = not args.quiet and sys.stderr.isatty()
    problems: list[str] = []
    for url in endpoints:
        tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
        try:
            outcome = _download(url, args, tmp, show)
            if outcome is not None:
                problems.append(f"{url}: {outcome}")
                continue
            try:
                verified = verify_backup(tmp)
            except BackupError as e:
                problems.append(f"{url}: the download is not a complete backup: {e}")
                continue
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        finally:
            tmp.unlink(missing_ok=True)
        print(
            f"saved a backup of revision {verified.revision} ({verified.rows} rows, {verified.size_bytes} bytes, "
            f"sha256 {verified.sha256}) from {url} to {target}"
        )
        return EXIT_OK
    print("beaver-vault backup: no node gave a complete backup:", file=sys.stderr)
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    return EXIT_UNAVAILABLE


def _download(url: str, args: argparse.Namespace, tmp: Path, show: bool) -> str | None:
    """Stream one node's backup into ``tmp`` (fsynced). None on success, else what went wrong."""
    timeout = httpx.Timeout(args.timeout)
    try:
        with httpx.Client(timeout=timeout) as client, client.stream(
            "GET", url + BACKUP_PATH, params={"consistency": args.consistency}
        ) as resp:
            if resp.status_code != 200:
                resp.read()
                return f"HTTP {resp.status_code} {' '.join(resp.text.split())[:300]}"
            total = resp.headers.get(ROWS_HEADER)
            progress = _Progress(int(total) if total and total.isdigit() else None, show)
            lines = nbytes = 0
            overhead = 2  # the header line and one table line, until the header says how many tables
            first = b""
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                for chunk in resp.iter_bytes():
                    os.write(fd, chunk)  # a regular file: writes are complete
                    nbytes += len(chunk)
                    lines += chunk.count(b"\n")
                    if len(first) < 65536 and b"\n" not in first:
                        first += chunk[:65536]
                        overhead = 1 + _table_count(first, default=1)
                    rows = max(0, lines - overhead)  # the trailer line is counted too at the very end
                    progress.update(rows if progress.total is None else min(rows, progress.total), nbytes)
                os.fsync(fd)
            finally:
                os.close(fd)
            progress.update(progress.total or lines, nbytes, final=True)
    except httpx.HTTPError as e:
        return f"{type(e).__name__}: {e}"
    except OSError as e:
        return f"cannot write {tmp}: {e.strerror or e}"
    return None


def _table_count(head: bytes, default: int) -> int:
    """How many tables the backup's header line (the start of ``head``) announces."""
    import json

    line, sep, _ = head.partition(b"\n")
    if not sep:
        return default
    try:
        tables = json.loads(line).get("tables")
    except (ValueError, AttributeError):
        return default
    return len(tables) if isinstance(tables, dict) else default


# --- restore ------------------------------------------------------------------------------------


def cmd_restore(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from beaver_vault.raft.messages import Member
    from beaver_vault.storage.backup import BackupError, seed_from_backup, verify_backup

    flags: dict[str, object] = {s.name: getattr(args, s.name, None) for s in SETTINGS}
    flags["config"] = args.config
    try:
        cfg = load_config(flags=flags, env=env, config_file=config_file_from(flags, env))
    except ConfigError as e:
        print(f"beaver-vault restore: configuration error: {e}", file=sys.stderr)
        return EXIT_USAGE
    source = Path(args.file)
    try:
        backup = verify_backup(source)
    except BackupError as e:
        print(f"beaver-vault restore: refused: {e}. Nothing was written.", file=sys.stderr)
        return EXIT_REFUSED
    data_dir = cfg.data_dir
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        print(
            f"beaver-vault restore: refused: data directory {data_dir} is not empty (a restore seeds a new node; "
            "give an absent or empty directory). Nothing was written.",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    cluster_id = f"{secrets.randbits(64):016x}"
    parent = data_dir.resolve().parent
    staging = parent / f".{data_dir.name}.restore-{os.getpid()}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        seed_from_backup(
            backup,
            staging / cfg.db_path.name,
            cluster_id=cluster_id,
            member=Member(cfg.node_id, cfg.raft_address, cfg.http_address),
        )
        _fsync_dir(staging)
        if data_dir.exists():
            data_dir.rmdir()  # empty (checked above); rename() onto it would work too on Linux
        os.rename(staging, data_dir)
        _fsync_dir(parent)
    except (BackupError, OSError, ValueError) as e:
        shutil.rmtree(staging, ignore_errors=True)
        print(f"beaver-vault restore: failed: {e}. Nothing was written to {data_dir}.", file=sys.stderr)
        return EXIT_REFUSED
    keys = backup.tables.get("kv", 0)
    print(
        f"restored revision {backup.revision} ({keys} keys, {backup.rows} rows) into {data_dir} as {cfg.node_id}, "
        f"the only member of new cluster {cluster_id}.\n"
        f"Start it with the same settings (beaver-vault server --node-id {cfg.node_id} --data-dir {data_dir} ...), "
        f"then join the other nodes to it (--join {cfg.http_address})."
    )
    return EXIT_OK
