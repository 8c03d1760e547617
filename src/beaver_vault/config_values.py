"""The value parsers of the settings (``config_settings.SETTINGS``): raw value in, typed value out.

Each parser takes the raw value (a string from the environment or a flag; any YAML scalar from
the file) and returns the typed value or raises ``ValueError`` with a short reason, which
``config.load_config`` turns into a ``ConfigError`` naming the setting and where the value came
from. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def parse_str(raw: object) -> str:
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"expected a string, got {_describe(raw)}")
    return str(raw)


def parse_int(raw: object) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"expected an integer, got {_describe(raw)}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        text = raw.strip().replace("_", "")
        if re.fullmatch(r"[+-]?[0-9]+", text):
            return int(text)
    raise ValueError(f"expected an integer, got {_describe(raw)}")


def parse_float(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError(f"expected a number, got {_describe(raw)}")
    value: float
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {_describe(raw)}") from None
    else:
        raise ValueError(f"expected a number, got {_describe(raw)}")
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {_describe(raw)}")
    return value


def int_in(low: int, high: int | None = None) -> Callable[[object], int]:
    def parse(raw: object) -> int:
        value = parse_int(raw)
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"expected an integer {bound}, got {value}")
        return value

    return parse


def float_over(low: float, *, inclusive: bool = False) -> Callable[[object], float]:
    def parse(raw: object) -> float:
        value = parse_float(raw)
        if value < low or (value == low and not inclusive):
            cmp = "at least" if inclusive else "greater than"
            raise ValueError(f"expected a number {cmp} {low:g}, got {value:g}")
        return value

    return parse


def parse_port(raw: object) -> int:
    try:
        return int_in(1, 65535)(raw)
    except ValueError as e:
        raise ValueError(f"{e} (a TCP port is 1-65535)") from None


def parse_node_id(raw: object) -> str:
    value = parse_str(raw)
    if not NODE_ID_RE.match(value):
        raise ValueError(
            f"expected 1-64 characters of letters, digits, '.', '_' or '-' (starting with a letter or digit), "
            f"got {_describe(raw)}"
        )
    return value


def parse_host(raw: object) -> str:
    value = parse_str(raw)
    if not value or any(c.isspace() or c in "/?#@" for c in value):
        raise ValueError(f"expected a host name or IP address, got {_describe(raw)}")
    return value.removeprefix("[").removesuffix("]")


def parse_path(raw: object) -> Path:
    value = parse_str(raw)
    if not value:
        raise ValueError("expected a directory path, got an empty string")
    return Path(value).expanduser()


def parse_join(raw: object) -> str | None:
    value = parse_str(raw)
    if not value:
        return None  # an empty BEAVER_VAULT_JOIN= or --join "" means: do not join
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL of a cluster member, got {_describe(raw)}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ValueError(f"the URL has an invalid port: {_describe(raw)}") from None
    return value.rstrip("/")


def parse_log_level(raw: object) -> str:
    value = parse_str(raw).upper()
    if value == "WARN":
        value = "WARNING"
    if value not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {_describe(raw)}")
    return value


def parse_log_format(raw: object) -> str:
    value = parse_str(raw).lower()
    if value not in LOG_FORMATS:
        raise ValueError(f"expected one of {', '.join(LOG_FORMATS)}, got {_describe(raw)}")
    return value


def parse_seed(raw: object) -> int | None:
    if isinstance(raw, str) and raw.strip().lower() in ("", "none", "random"):
        return None
    return int_in(0)(raw)


def parse_file(raw: object) -> Path | None:
    value = parse_str(raw)
    return Path(value).expanduser() if value else None


def parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(raw, str) and raw.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {_describe(raw)}")


CLIENT_AUTH_MODES = ("none", "optional", "required")


def parse_client_auth(raw: object) -> str:
    value = parse_str(raw).lower()
    if value not in CLIENT_AUTH_MODES:
        raise ValueError(f"expected one of {', '.join(CLIENT_AUTH_MODES)}, got {_describe(raw)}")
    return value


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost``: nothing beyond this machine can connect."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _describe(raw: object) -> str:
    if isinstance(raw, str):
        return repr(raw)
    return f"{type(raw).__name__} {raw!r}"
