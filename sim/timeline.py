"""A timeline picture of one run: a self-contained HTML page with one inline SVG (no script,
nothing loaded from outside), so it opens anywhere and can be attached to a bug report.

Rows: one per client process, each operation a bar from its invoke to its completion (green
ok, grey fail, orange info = unknown outcome, red outline = an operation the checker or an
invariant named), and on top a row of the world's events (crashes, restarts, partitions,
heals, pauses, leaders, membership changes). The x axis is the run's virtual time in ms. A
bar's tooltip (``<title>``) names the operation, its values and its times.

Deterministic like the run: the same seed writes the same file, byte for byte.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from typing import Any

from sim.params import Params

WIDTH = 1400
ROW = 14
LEFT = 70
MAX_OPS = 20_000  # a limit on everything: a longer history is drawn up to here
MAX_MARKS = 5_000

_MARK_COLOURS = (
    ("CRASH", "#d62728"),
    ("start", "#2ca02c"),
    ("PARTITION", "#9467bd"),
    ("HEAL", "#17becf"),
    ("PAUSE", "#8c564b"),
    ("LEADER", "#1f77b4"),
    ("CONFIG", "#bcbd22"),
    ("PHASE", "#000000"),
    ("WIPE", "#e377c2"),
)
_OP_COLOURS = {"ok": "#59a14f", "fail": "#bab0ac", "info": "#f28e2b", "open": "#edc948"}


def _mark_colour(text: str) -> str | None:
    for word, colour in _MARK_COLOURS:
        if word in text:
            return colour
    return None


def operations(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pair invokes with completions: one dict per operation (``end`` None if never answered)."""
    open_: dict[Any, dict[str, Any]] = {}
    ops: list[dict[str, Any]] = []
    for line, e in enumerate(history, start=1):
        p = e.get("process")
        if e.get("type") == "invoke":
            op = {
                "process": p,
                "f": e.get("f"),
                "key": e.get("key"),
                "value": e.get("value"),
                "start": int(e.get("time", 0)) // 1_000_000,
                "end": None,
                "type": "open",
                "line": line,
            }
            open_[p] = op
            ops.append(op)
        elif p in open_:
            op = open_.pop(p)
            op["end"] = int(e.get("time", 0)) // 1_000_000
            op["type"] = e.get("type")
            op["result"] = e.get("value")
    return ops


def render(
    title: str,
    detail: str,
    history: Sequence[dict[str, Any]],
    marks: Sequence[tuple[int, str]],
    culprits: Sequence[str] = (),
    failed_at: int | None = None,
) -> str:
    ops = operations(history)[:MAX_OPS]
    marks = list(marks)[:MAX_MARKS]
    end = max([1, failed_at or 0] + [o["end"] or o["start"] for o in ops] + [t for t, _ in marks])
    procs = sorted({o["process"] for o in ops}, key=lambda p: (str(type(p)), p))
    nodes = sorted({t.split(" ", 1)[0] for _, t in marks if re.fullmatch(r"n\d+", t.split(" ", 1)[0])}, key=_node_order)
    node_row = {n: i + 1 for i, n in enumerate(nodes)}
    top = 60 + (len(nodes) + 1) * ROW
    row_of = {p: i for i, p in enumerate(procs)}
    height = top + (len(procs) + 1) * ROW + 40
    scale = float(WIDTH - LEFT - 20) / int(end)

    def x(t: int) -> float:
        return LEFT + t * scale

    parts: list[str] = []
    # time axis
    step = _nice_step(end)
    for t in range(0, end + 1, step):
        parts.append(
            f'<line x1="{x(t):.1f}" y1="{top - 10}" x2="{x(t):.1f}" y2="{height - 30}" stroke="#eee"/>'
            f'<text x="{x(t):.1f}" y="{height - 15}" font-size="10" text-anchor="middle">{t} ms</text>'
        )
    base = 60
    parts.append(f'<text x="4" y="{base + 4}" font-size="10">cluster</text>')
    for n, i in node_row.items():
        parts.append(f'<text x="4" y="{base + i * ROW + 4}" font-size="10">{html.escape(n)}</text>')
    for t, text in marks:
        colour = _mark_colour(text)
        if colour is None:
            continue
        y = base + node_row.get(text.split(" ", 1)[0], 0) * ROW
        parts.append(
            f'<line x1="{x(t):.1f}" y1="{y - 6}" x2="{x(t):.1f}" y2="{y + 6}" stroke="{colour}" stroke-width="2">'
            f"<title>{html.escape(f'{t} ms: {text}')}</title></line>"
        )
    if failed_at is not None:
        parts.append(
            f'<line x1="{x(failed_at):.1f}" y1="{base - 12}" x2="{x(failed_at):.1f}" y2="{height - 30}" '
            f'stroke="#d62728" stroke-dasharray="4 3"><title>failure detected at {failed_at} ms</title></line>'
        )
    culprit_set = set(culprits)
    for o in ops:
        y = top + (row_of[o["process"]] + 1) * ROW
        t1 = o["end"] if o["end"] is not None else end
        colour = _OP_COLOURS.get(str(o["type"]), "#999")
        tip = (
            f"process {o['process']} {o['f']} {o['key']} value={json.dumps(o['value'])} "
            f"-> {o['type']} {json.dumps(o.get('result'))} [{o['start']}..{o['end']} ms] history line {o['line']}"
        )
        stroke = ' stroke="#d62728" stroke-width="2"' if str(o["line"]) in culprit_set else ""
        w = max(1.0, (t1 - o["start"]) * scale)
        parts.append(
            f'<rect x="{x(o["start"]):.1f}" y="{y - ROW + 3}" width="{w:.1f}" height="{ROW - 4}" fill="{colour}"{stroke}>'
            f"<title>{html.escape(tip)}</title></rect>"
        )
    for p, i in row_of.items():
        parts.append(f'<text x="4" y="{top + (i + 1) * ROW - 2}" font-size="10">{html.escape(str(p))}</text>')
    legend = " ".join(
        f'<span style="background:{c};padding:0 6px">{k}</span>' for k, c in _OP_COLOURS.items()
    ) + " " + " ".join(f'<span style="color:{c}">&#9646; {w}</span>' for w, c in _MARK_COLOURS)
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif">'
        + "".join(parts)
        + "</svg>"
    )
    counts = {k: sum(1 for o in ops if o["type"] == k) for k in ("ok", "fail", "info", "open")}
    return (
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>"
        + html.escape(title)
        + "</title></head><body style=\"font-family:sans-serif\">\n<h1 style=\"font-size:16px\">"
        + html.escape(title)
        + "</h1>\n<pre style=\"white-space:pre-wrap\">"
        + html.escape(detail)
        + "</pre>\n<p>"
        + html.escape(" ".join(f"{k}={v}" for k, v in counts.items()))
        + f" operations; {len(marks)} world events</p>\n<p>{legend}</p>\n{svg}\n</body></html>\n"
    )


def write_timeline(
    path: str,
    params: Params,
    kind: str,
    detail: str,
    history: Sequence[dict[str, Any]],
    marks: Sequence[tuple[int, str]],
    label: str = "",
    end_ms: int | None = None,
    highlight: bool = True,
) -> None:
    """``highlight``: the checker's line numbers in ``detail`` refer to ``history`` (outline the
    operations it named)."""
    title = f"Beaver-Vault simulator {label}seed {params.seed}: {kind}"
    culprits = re.findall(r"invoked line (\d+)", detail) if highlight else []
    failed_at = end_ms if kind != "ok" else None
    page = render(title, detail + "\n" + " ".join(params.describe()), history, marks, culprits, failed_at)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)


def _nice_step(end: int) -> int:
    for step in (100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000):
        if end / step <= 20:
            return step
    return 100_000


def _node_order(node: str) -> int:
    return int(node[1:])
