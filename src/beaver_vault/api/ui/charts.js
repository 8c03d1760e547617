// Beaver-Vault console: time-series charts drawn as SVG by hand (no library, no build step).
//
// BV.drawChart(container, {series, markers, t0, t1, unit}) replaces the container's content
// with one SVG: a line per series over [t0, t1] (ms), a y axis from 0 to a rounded maximum,
// minute ticks, and a dashed vertical line per marker (leader changes). Colour is never the
// only cue: each series also has its own dash pattern, shown in the legend. The container
// gets data-points / data-max attributes and each series path data-series / data-last /
// data-max, which the browser tests read.
"use strict";

(() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 600, H = 190, LEFT = 48, RIGHT = 10, TOP = 16, BOTTOM = 22;

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) node.setAttribute(k, String(v));
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  // 1, 2, 5 x 10^n at or above v (at least 1).
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  const fmtNum = (v) => (v >= 100 ? String(Math.round(v)) : v >= 10 ? v.toFixed(1).replace(/\.0$/, "") : String(+v.toFixed(2)));

  function drawChart(container, { series, markers = [], t0, t1, unit = "" }) {
    const plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
    let max = 0, points = 0;
    for (const s of series) for (const [, v] of s.points) if (v !== null && v > max) max = v;
    const top = niceMax(max);
    const x = (t) => LEFT + ((t - t0) / Math.max(1, t1 - t0)) * plotW;
    const y = (v) => TOP + plotH - (v / top) * plotH;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", preserveAspectRatio: "xMidYMid meet" });
    const title = [];
    // y grid: 0, half, top
    for (const v of [0, top / 2, top]) {
      root.append(svg("line", { x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v), class: "grid" }));
      root.append(svg("text", { x: LEFT - 4, y: y(v) + 3, "text-anchor": "end", class: "axis-label" }, `${fmtNum(v)}${unit}`));
    }
    // x ticks: every minute back from t1
    for (let t = t1, i = 0; t >= t0 - 1; t -= 60000, i++) {
      root.append(svg("line", { x1: x(t), x2: x(t), y1: TOP + plotH, y2: TOP + plotH + 4, class: "grid" }));
      root.append(svg("text", { x: x(t), y: H - 4, "text-anchor": i === 0 ? "end" : "middle", class: "axis-label" }, i === 0 ? "now" : `-${i} min`));
    }
    for (const m of markers) {
      if (m.t < t0 || m.t > t1) continue;
      root.append(svg("line", { x1: x(m.t), x2: x(m.t), y1: TOP - 6, y2: TOP + plotH, class: "marker", "data-marker": m.label }));
      const right = x(m.t) > LEFT + plotW * 0.7; // keep the label inside the plot
      root.append(svg("text", { x: x(m.t) + (right ? -3 : 3), y: TOP - 6 + 8, "text-anchor": right ? "end" : "start", class: "marker-label" }, m.label));
    }
    const legend = document.createElement("ul");
    legend.className = "legend";
    for (const s of series) {
      let d = "", pen = false, last = null, smax = 0;
      for (const [t, v] of s.points) {
        if (t < t0) continue;
        if (v === null || v === undefined) { pen = false; continue; }
        d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
        last = v;
        points += 1;
        if (v > smax) smax = v;
      }
      root.append(svg("path", {
        d: d || "M0,0", class: "series", stroke: s.color, "stroke-dasharray": s.dash || null,
        "data-series": s.name, "data-last": last === null ? "" : last, "data-max": smax, visibility: d ? null : "hidden",
      }));
      const li = document.createElement("li");
      li.dataset.series = s.name;
      const key = svg("svg", { width: 26, height: 10, "aria-hidden": "true" },
        svg("line", { x1: 1, x2: 25, y1: 5, y2: 5, stroke: s.color, "stroke-width": 2.5, "stroke-dasharray": s.dash || null }));
      li.append(key, ` ${s.label} `);
      const now = document.createElement("span");
      now.className = "now";
      now.textContent = last === null ? "—" : `${fmtNum(last)}${unit}`;
      li.append(now);
      legend.append(li);
      title.push(`${s.label}: ${last === null ? "no data" : `${fmtNum(last)}${unit} now, max ${fmtNum(smax)}${unit}`}`);
    }
    root.setAttribute("aria-label", title.join("; ") || "no data yet");
    container.replaceChildren(root, legend);
    container.dataset.points = String(points);
    container.dataset.max = String(max);
  }

  const PALETTE = [
    { color: "#0b5cad", dash: null }, { color: "#b35900", dash: "6 3" }, { color: "#116329", dash: "2 2" },
    { color: "#8250df", dash: "8 3 2 3" }, { color: "#a40e26", dash: "1 3" }, { color: "#57606a", dash: "10 4" },
  ];

  window.BV = Object.assign(window.BV || {}, { drawChart, niceMax, PALETTE });
})();
