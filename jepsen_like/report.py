"""What a run looked like: availability figures, late unknown writes, a timeline picture.

* ``availability``: completions per second (ok / fail / info) and the longest window without a
  successful write (ok write, cas, append or delete), from the start of the workload to its end.
* ``late_unknown``: writes answered ``unknown`` that took effect AFTER a newer acknowledged
  write to the same key was invoked after that answer (linearizable, but not what a user
  expects; issue 13 item 1). Seen on registers: an ok read returns the value of an ``info``
  write W although an ok write/cas W2 was invoked after W's answer and completed before the
  read began. Values are unique, so the read names W.
* ``timeline_html``: one self-contained HTML file with an inline SVG: fault intervals on top
  (one lane per kind), completions per second below (ok green, fail orange, info red), the
  longest write gap shaded.

Pure functions of the history lines (``shared/HISTORY-FORMAT.md`` plus the harness's ``node``
field) and the nemesis log; no I/O besides reading those files in ``load``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WRITES = frozenset({"write", "cas", "append", "delete"})
NS = 1_000_000_000


def load(path: Path) -> list[dict[str, Any]]:
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


@dataclass(frozen=True)
class Availability:
    seconds: int
    ok_per_s: list[int]
    fail_per_s: list[int]
    info_per_s: list[int]
    longest_write_gap_s: float
    gap_start_s: float
    mean_ok_per_s: float
    min_ok_per_s: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "mean_ok_per_s": round(self.mean_ok_per_s, 1),
            "min_ok_per_s": self.min_ok_per_s,
            "longest_write_gap_s": round(self.longest_write_gap_s, 2),
            "gap_start_s": round(self.gap_start_s, 2),
            "ok_per_s": self.ok_per_s,
        }


def availability(events: list[dict[str, Any]], end_s: float) -> Availability:
    """Figures over [0, end_s) seconds of history time (the workload's span)."""
    n = max(1, int(end_s + 0.999))
    ok, fail, info = [0] * n, [0] * n, [0] * n
    write_times: list[float] = []
    for e in events:
        t = e.get("time")
        if e["type"] == "invoke" or not isinstance(t, int):
            continue
        s = t / NS
        if s >= end_s:
            continue
        b = min(n - 1, int(s))
        {"ok": ok, "fail": fail, "info": info}[e["type"]][b] += 1
        if e["type"] == "ok" and e["f"] in WRITES:
            write_times.append(s)
    points = [0.0] + sorted(write_times) + [end_s]
    gap, start = 0.0, 0.0
    for a, b2 in zip(points, points[1:], strict=False):
        if b2 - a > gap:
            gap, start = b2 - a, a
    full = ok[: max(1, int(end_s))]
    return Availability(n, ok, fail, info, gap, start, sum(full) / len(full), min(full))


def late_unknown(events: list[dict[str, Any]]) -> list[str]:
    """Unknown writes seen taking effect after a newer acknowledged write (registers)."""
    open_ops: dict[int, dict[str, Any]] = {}
    ops: list[dict[str, Any]] = []
    for i, e in enumerate(events):
        p = e["process"]
        if e["type"] == "invoke":
            open_ops[p] = {"f": e["f"], "key": e["key"], "value": e["value"], "inv": i, "done": None, "type": None}
        else:
            op = open_ops.pop(p, None)
            if op is None:
                continue
            op["done"], op["type"], op["result"] = i, e["type"], e["value"]
            ops.append(op)
    written: dict[tuple[str, Any], dict[str, Any]] = {}
    setters: dict[str, list[dict[str, Any]]] = {}
    for op in ops:
        if op["f"] == "write":
            new = op["value"]
        elif op["f"] == "cas" and isinstance(op["value"], list) and len(op["value"]) == 2:
            new = op["value"][1]
        else:
            continue
        if isinstance(new, (int, str)):
            written[(op["key"], new)] = op
        setters.setdefault(op["key"], []).append(op)
    found = []
    for r in ops:
        if r["f"] != "read" or r["type"] != "ok" or not isinstance(r.get("result"), (int, str)):
            continue
        w = written.get((r["key"], r["result"]))
        if w is None or w["type"] != "info":
            continue
        for w2 in setters.get(r["key"], []):
            if w2["type"] == "ok" and w2["inv"] > w["done"] and w2["done"] < r["inv"]:
                found.append(
                    f"{r['key']}: the unknown {w['f']} of {r['result']!r} (answered at event {w['done']}) was read at "
                    f"event {r['inv']} after the ok {w2['f']} {w2['value']!r} (events {w2['inv']}-{w2['done']})"
                )
                break
    return found


def fault_intervals(nemesis: list[dict[str, Any]], end_s: float) -> list[tuple[str, str, float, float]]:
    """(lane, label, start, end): each injected fault until the next heal."""
    out = []
    pending: list[tuple[str, str, float]] = []
    for e in nemesis:
        action, t = e.get("action", ""), float(e.get("t", 0.0))
        if action == "heal":
            for lane, label, start in pending:
                out.append((lane, label, start, t))
            pending = []
        elif action in ("error", "joined", "clock-skipped"):
            continue
        else:
            lane = action.split("-")[0] if action not in ("restart-all",) else action
            if action in ("join", "remove", "remove-refused", "transfer"):
                lane = "membership"
            detail = {k: v for k, v in e.items() if k not in ("t", "action")}
            label = f"{action} {json.dumps(detail, separators=(',', ':'))}"
            if lane == "membership":
                out.append((lane, label, t, t + 0.3))
            else:
                pending.append((lane, label, t))
    for lane, label, start in pending:
        out.append((lane, label, start, end_s))
    return out


def timeline_html(
    title: str, avail: Availability, nemesis: list[dict[str, Any]], end_s: float, summary: dict[str, Any]
) -> str:
    width, left, lane_h, bar_h = 1100, 110, 16, 140
    intervals = fault_intervals(nemesis, end_s)
    lanes = sorted({lane for lane, *_ in intervals})
    top = 20
    chart_top = top + lane_h * max(1, len(lanes)) + 20
    height = chart_top + bar_h + 40
    scale = (width - left - 10) / max(end_s, 1.0)
    colors = {
        "kill": "#c0392b", "pause": "#8e44ad", "partition": "#2980b9", "skew": "#16a085", "clock": "#1abc9c",
        "membership": "#d35400", "restart-all": "#7f0000", "snapshot": "#2c3e50",
    }  # fmt: skip
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">']
    for k, lane in enumerate(lanes):
        y = top + k * lane_h
        parts.append(f'<text x="4" y="{y + 11}">{html.escape(lane)}</text>')
        for lane2, label, a, b in intervals:
            if lane2 != lane:
                continue
            x = left + a * scale
            w = max(2.0, (b - a) * scale)
            parts.append(
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{lane_h - 3}" fill="{colors.get(lane, "#555")}" '
                f'opacity="0.75"><title>{html.escape(label)} ({a:.2f}-{b:.2f} s)</title></rect>'
            )
    # Two panels: ok completions per second, and fail + info per second (each on its own scale).
    ok_peak = max(avail.ok_per_s + [1])
    bad_peak = max([f + i for f, i in zip(avail.fail_per_s, avail.info_per_s, strict=False)] + [1])
    half = bar_h // 2 - 6
    ok_base = chart_top + half
    base = chart_top + bar_h
    gx = left + avail.gap_start_s * scale
    parts.append(
        f'<rect x="{gx:.1f}" y="{chart_top}" width="{max(1.0, avail.longest_write_gap_s * scale):.1f}" height="{bar_h}" '
        f'fill="#f1c40f" opacity="0.25"><title>longest window without a successful write: '
        f"{avail.longest_write_gap_s:.2f} s</title></rect>"
    )
    for s in range(avail.seconds):
        x = left + s * scale
        w = max(1.0, scale - 1)
        if avail.ok_per_s[s]:
            h = avail.ok_per_s[s] / ok_peak * half
            parts.append(
                f'<rect x="{x:.1f}" y="{ok_base - h:.1f}" width="{w:.1f}" height="{h:.1f}" fill="#27ae60">'
                f"<title>{s}-{s + 1} s: {avail.ok_per_s[s]} ok</title></rect>"
            )
        yy = float(base)
        for count, color, name in ((avail.fail_per_s[s], "#e67e22", "fail"), (avail.info_per_s[s], "#e74c3c", "info")):
            if count == 0:
                continue
            h = count / bad_peak * half
            yy -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{yy:.1f}" width="{w:.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{s}-{s + 1} s: {count} {name}</title></rect>"
            )
    parts.append(f'<text x="4" y="{chart_top + 12}">ok/s (max {ok_peak})</text>')
    parts.append(f'<text x="4" y="{ok_base + 24}">fail+info/s</text>')
    parts.append(f'<text x="4" y="{ok_base + 38}">(max {bad_peak})</text>')
    parts.append(f'<line x1="{left}" y1="{ok_base}" x2="{width - 10}" y2="{ok_base}" stroke="#999"/>')
    parts.append(f'<line x1="{left}" y1="{base}" x2="{width - 10}" y2="{base}" stroke="#333"/>')
    step = max(1, int(end_s / 20) or 1)
    for s in range(0, int(end_s) + 1, step):
        x = left + s * scale
        parts.append(f'<text x="{x:.1f}" y="{base + 14}" text-anchor="middle">{s}s</text>')
    parts.append("</svg>")
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(json.dumps(v, default=str))[:300]}</td></tr>"
        for k, v in summary.items()
        if k not in ("availability",)
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:16px}table{border-collapse:collapse;font-size:12px}"
        "th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}</style></head><body>"
        f"<h2>{html.escape(title)}</h2>"
        f"<p>mean {avail.mean_ok_per_s:.1f} ok ops/s, lowest second {avail.min_ok_per_s}; longest window without a "
        f"successful write {avail.longest_write_gap_s:.2f} s (from {avail.gap_start_s:.2f} s, shaded). "
        "Bars: completions per second, ok (green) above, fail (orange) and info (red) below, each on its "
        "own scale. Hover for details.</p>"
        + "".join(parts)
        + f"<h3>Summary</h3><table>{rows}</table></body></html>"
    )
