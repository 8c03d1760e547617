// Beaver-Vault console: charts of the last minutes, the Raft event feed, and membership
// changes (join, remove) with a confirmation. Plain JavaScript; uses the helpers of app.js
// (window.BV) and charts.js. All server text is inserted with textContent.
//
// Sources: GET /ui/stats every second (this node's per-second samples and the leader's lag
// series), GET /api/v1/events?after=<seq> every second (this node's Raft event journal),
// POST /api/v1/raft/join and /api/v1/raft/remove (forwarded to the leader by any node).
"use strict";

(() => {
  const { el, call, errorText, outcomeOf, drawChart, PALETTE, WRITE_TIMEOUT_MS } = window.BV;
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 1000;
  const WINDOW_MS = 300 * 1000;
  const EVENTS_MAX = 200;
  const JOIN_TIMEOUT_MS = 60000; // a join answers once the new node caught up and was promoted

  // ------------------------------------------------------------------ charts

  function series(samples, name, label, pick, style) {
    return { name, label, ...style, points: samples.map((s) => [s.t_ms, pick(s)]) };
  }

  // A marker wherever the leader seen in consecutive samples differs.
  function leaderMarkers(samples) {
    const out = [];
    for (let i = 1; i < samples.length; i++) {
      if (samples[i].leader !== samples[i - 1].leader) {
        out.push({ t: samples[i].t_ms, label: samples[i].leader ? `leader ${samples[i].leader}` : "no leader" });
      }
    }
    return out;
  }

  function renderCharts(data) {
    const samples = (data.node && data.node.samples) || [];
    const t1 = samples.length ? samples[samples.length - 1].t_ms : Date.now();
    const t0 = t1 - WINDOW_MS;
    const markers = leaderMarkers(samples);
    drawChart($("chart-throughput").querySelector(".plot"), {
      t0, t1, markers, series: [
        series(samples, "writes", "writes/s (HTTP, this node)", (s) => s.writes, PALETTE[0]),
        series(samples, "reads", "reads/s (HTTP, this node)", (s) => s.reads, PALETTE[1]),
        series(samples, "applied", "entries applied/s (cluster)", (s) => s.applied, PALETTE[2]),
      ],
    });
    drawChart($("chart-latency").querySelector(".plot"), {
      t0, t1, markers, unit: " ms", series: [
        series(samples, "write_p50", "write p50", (s) => s.write_p50_ms, PALETTE[0]),
        series(samples, "write_p99", "write p99", (s) => s.write_p99_ms, PALETTE[1]),
        series(samples, "read_p50", "read p50", (s) => s.read_p50_ms, PALETTE[2]),
        series(samples, "read_p99", "read p99", (s) => s.read_p99_ms, PALETTE[3]),
      ],
    });
    const lagSamples = (data.leader && data.leader.samples) || [];
    const followers = [...new Set(lagSamples.flatMap((s) => Object.keys(s.lag || {})))].sort();
    drawChart($("chart-lag").querySelector(".plot"), {
      t0, t1, markers, series: followers.map((id, i) => series(lagSamples, `lag-${id}`, id,
        (s) => (s.lag && typeof s.lag[id] === "number" ? s.lag[id] : null), PALETTE[i % PALETTE.length])),
    });
    const state = $("charts-state");
    const lagNote = data.leader ? `lag as seen by the leader ${data.leader.node_id}` : `no lag series (${data.leader_error})`;
    state.textContent = `${samples.length} samples from ${data.node ? data.node.node_id : "?"}; ${lagNote}.`;
    state.dataset.state = "ok";
  }

  async function pollStats() {
    const started = Date.now();
    try {
      const r = await call("GET", "/ui/stats");
      if (r.ok && r.data && r.data.node) renderCharts(r.data);
      else {
        $("charts-state").textContent = `Could not load the stats: ${errorText(r)}`;
        $("charts-state").dataset.state = "error";
      }
    } catch (e) {
      $("charts-state").textContent = `display error: ${e}`;
    } finally {
      setTimeout(pollStats, Math.max(100, POLL_MS - (Date.now() - started)));
    }
  }

  // ------------------------------------------------------------------ Raft events

  const list = (xs) => (xs && xs.length ? xs.join(", ") : "none");

  function describe(e) {
    switch (e.kind) {
      case "started": return `node started as ${e.role}; leader ${e.leader || "unknown"}; members ${list(e.members)}`;
      case "election": return `started an election (${e.role})`;
      case "role": return `role ${e.from} → ${e.to}`;
      case "leader": return e.to ? `leader ${e.from || "none"} → ${e.to}` : `lost the leader ${e.from || ""}`.trim();
      case "membership":
      case "membership_rollback": {
        const parts = [];
        if (e.added && e.added.length) parts.push(`added ${list(e.added)}`);
        if (e.removed && e.removed.length) parts.push(`removed ${list(e.removed)}`);
        if (e.promoted && e.promoted.length) parts.push(`promoted ${list(e.promoted)} to voter`);
        if (e.demoted && e.demoted.length) parts.push(`demoted ${list(e.demoted)}`);
        const what = e.kind === "membership_rollback" ? "uncommitted change rolled back: " : "";
        return `${what}${parts.join("; ") || "changed"} (members ${list(e.members)}; config entry ${e.index})`;
      }
      case "snapshot_sent": return `sending a snapshot${e.to ? ` to ${e.to}` : ""}`;
      case "snapshot_installed": return `installed a snapshot at index ${e.snapshot_index}`;
      case "compaction": return `compacted the log up to index ${e.snapshot_index} (log starts at ${e.log_first_index})`;
      case "change_rolled_back": return `rolled back the ${e.what} of ${e.node_id}: ${e.reason}`;
      default: return JSON.stringify(e);
    }
  }

  let lastSeq = 0;

  function addEvent(e) {
    const feed = $("events");
    const item = el("li", { "data-kind": e.kind, "data-seq": e.seq, "data-term": e.term },
      el("span", { cls: "kind", text: e.kind.replace(/_/g, " ") }), " ",
      el("span", { cls: "what", text: describe(e) }),
      el("span", { cls: "note", text: ` · term ${e.term}` }),
      el("time", { text: new Date(e.time_ms).toLocaleTimeString() }));
    feed.prepend(item);
    while (feed.children.length > EVENTS_MAX) feed.lastElementChild.remove();
  }

  async function pollEvents() {
    const started = Date.now();
    const state = $("events-state");
    try {
      const r = await call("GET", `/api/v1/events?after=${lastSeq}`);
      if (r.ok && r.data && Array.isArray(r.data.events)) {
        if (r.data.last_seq < lastSeq) {
          // The node restarted: its journal starts again at 1.
          lastSeq = 0;
          $("events").prepend(el("li", { "data-kind": "restart" }, el("span", { cls: "kind", text: "restart" }),
            " the node restarted; its journal starts again"));
        } else {
          if (r.data.missed) {
            $("events").prepend(el("li", { "data-kind": "missed", text: `${r.data.missed} events were dropped before they were shown` }));
          }
          for (const e of r.data.events) { addEvent(e); lastSeq = Math.max(lastSeq, e.seq); }
        }
        $("events-node").textContent = r.data.node_id;
        state.textContent = `live (last event #${r.data.last_seq})`;
        state.dataset.state = "ok";
      } else {
        state.textContent = `not loading: ${errorText(r)}`;
        state.dataset.state = "error";
      }
    } catch (e) {
      state.textContent = `display error: ${e}`;
      state.dataset.state = "error";
    } finally {
      setTimeout(pollEvents, Math.max(100, POLL_MS - (Date.now() - started)));
    }
  }

  // ------------------------------------------------------------------ membership

  // Asks in a modal dialog; resolves to {ok, force}.
  function confirmAction(title, text, { withForce = false } = {}) {
    const dialog = $("confirm-dialog");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-force-label").hidden = !withForce;
    $("confirm-force").checked = false;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => {
        resolve({ ok: dialog.returnValue === "ok", force: withForce && $("confirm-force").checked });
      }, { once: true });
      dialog.returnValue = "cancel";
      dialog.showModal();
      $("confirm-cancel").focus();
    });
  }

  function showAnswer(what, r) {
    const region = $("member-result");
    const time = new Date().toLocaleTimeString();
    if (r.ok) {
      const members = (r.data && r.data.members) || [];
      region.replaceChildren(el("div", { cls: "msg ok", "data-result": "ok" },
        el("p", {}, el("strong", { text: "OK: " }), `${what} (${time}). Members now: `,
          members.map((m) => `${m.id}${m.voter ? "" : " (learner)"}`).join(", ") || "—")));
      region.dataset.kind = "ok";
      return;
    }
    const body = r.data && typeof r.data === "object" ? r.data : null;
    const outcome = outcomeOf(r, true);
    const box = el("div", { cls: "msg error", role: "alert", "data-result": "error", "data-status": r.status },
      el("p", {}, el("strong", { text: "Refused: " }), `${what} failed (${time}) — ${errorText(r)}`));
    if (body) box.append(el("pre", { cls: "value-view", text: JSON.stringify(body, null, 2) }));
    if (outcome === "unknown") {
      box.dataset.outcome = "unknown";
      box.append(el("p", { cls: "outcome" }, el("strong", { text: "Outcome unknown: " }),
        "the change may or may not have happened; watch the member table and the Raft events."));
    } else {
      box.dataset.outcome = "not_applied";
      box.append(el("p", { cls: "outcome" }, el("strong", { text: "Not applied: " }), "the membership did not change."));
    }
    region.replaceChildren(box);
    region.dataset.kind = "error";
  }

  $("join-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const id = $("join-id").value.trim();
    const address = $("join-address").value.trim();
    if (!id || !address) return;
    const answer = await confirmAction("Join a node",
      `Add ${id} at raft address ${address} to the cluster? It joins as a learner and becomes a voter once it has caught up.`);
    if (!answer.ok) return;
    const button = $("join-btn");
    button.disabled = true;
    $("member-result").replaceChildren(el("p", { cls: "note", "data-result": "pending", text: `Joining ${id}… (answered once it is a voter)` }));
    const r = await call("POST", "/api/v1/raft/join", {
      body: JSON.stringify({ NodeID: id, RaftAddress: address }), timeoutMs: JOIN_TIMEOUT_MS,
    });
    button.disabled = false;
    showAnswer(`join ${id}`, r);
  });

  $("nodes-body").addEventListener("click", async (ev) => {
    const button = ev.target.closest("button.remove-node");
    if (!button) return;
    const id = button.dataset.nodeId;
    const answer = await confirmAction("Remove a node",
      `Remove ${id} from the cluster? The cluster refuses if the remaining voters would have no reachable quorum.`,
      { withForce: true });
    if (!answer.ok) return;
    $("member-result").replaceChildren(el("p", { cls: "note", "data-result": "pending", text: `Removing ${id}…` }));
    const r = await call("POST", "/api/v1/raft/remove", {
      body: JSON.stringify(answer.force ? { NodeID: id, Force: true } : { NodeID: id }), timeoutMs: WRITE_TIMEOUT_MS,
    });
    showAnswer(`remove ${id}${answer.force ? " (forced)" : ""}`, r);
  });

  pollStats();
  pollEvents();
})();
