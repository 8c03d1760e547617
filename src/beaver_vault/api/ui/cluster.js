// Beaver-Vault monitor: the cluster table (this node's status, the leader's view of every
// member and each member's own status, merged; polled every second) and the leadership
// transfer form. Uses the helpers of app.js (window.BV).
"use strict";

(() => {
  const { el, call, errorText, fmt, WRITE_TIMEOUT_MS, API, whenSignedIn } = window.BV;
  const $ = (id) => document.getElementById(id);

  const POLL_MS = 1000;

  const ROLE_MARK = {
    leader: "★", follower: "●", candidate: "◐", "pre-candidate": "◔", learner: "○", joining: "…",
  };

  function roleCell(role, note) {
    const td = el("td", { cls: `role role-${role.replace(/[^a-z-]/g, "")}`, "data-role": role });
    td.append(el("span", { cls: "mark", "aria-hidden": "true", text: ROLE_MARK[role] || "✕" }), ` ${role}`);
    if (note) td.append(el("span", { cls: "note", text: ` (${note})` }));
    return td;
  }

  function setBanner(lines) {
    const banner = $("banner");
    if (!lines.length) {
      banner.hidden = true;
      banner.replaceChildren();
      return;
    }
    banner.replaceChildren(...lines.map((line) => el("p", {}, ...line)));
    banner.hidden = false;
  }

  const downSince = new Map(); // node id -> when the page first saw it not answering

  function renderCluster(st, rn, peers) {
    const own = st.ok && st.data && typeof st.data === "object" ? st.data : null;
    const leaderView = rn.ok && rn.data && Array.isArray(rn.data.nodes) ? rn.data.nodes : null;
    const peerList = peers.ok && peers.data && Array.isArray(peers.data.peers) ? peers.data.peers : [];
    const banner = [];

    const state = $("poll-state");
    state.textContent = own ? `updated ${new Date().toLocaleTimeString()}` : `this node does not answer (${errorText(st)})`;
    state.dataset.state = own ? "ok" : "error";
    if (!own) {
      banner.push([el("strong", { text: "This node does not answer: " }), errorText(st),
        ". The figures below are the last ones received."]);
      setBanner(banner);
      return;
    }
    $("serving-node").textContent = `${own.node_id} (${own.role})`;
    document.title = `${own.leader_id ? "" : "NO LEADER · "}${own.node_id} · Beaver-Vault monitor`;
    $("sum-leader").textContent = own.leader_id ? own.leader_id : "none — no leader known to this node";
    $("sum-leader").dataset.leader = own.leader_id || "";
    $("sum-term").textContent = fmt(own.term);
    $("sum-commit").textContent = fmt(own.commit_index);
    $("sum-applied").textContent = fmt(own.applied_index);
    $("sum-last").textContent = fmt(own.last_log_index);
    $("sum-snapshot").textContent = `${fmt(own.snapshot_index)} (log starts at ${fmt(own.log_first_index)})`;

    if (own.storage_error) {
      banner.push([el("strong", { text: "Writes suspended on this node: " }),
        `${own.storage_error}. Reads of its applied state are still served; it resumes by itself once the disk accepts writes.`]);
    }
    if (!own.leader_id) {
      banner.push([el("strong", { text: "No leader: " }),
        `${own.node_id} knows of no leader in term ${own.term} (an election may be in progress). ` +
        "Writes and linearizable reads will fail until one is elected."]);
    }
    if (!leaderView) {
      const noLeader = rn.status === 503 || rn.status === 0;
      banner.push([el("strong", { text: noLeader ? "Leader's view unavailable: " : "Could not load the leader's view: " }),
        `${errorText(rn)}. Lag, match index, last contact and reachability are unknown; ` +
        "the table shows the members this node knows and what each says about itself."]);
    }
    setBanner(banner);
    $("nodes-source").textContent = leaderView ? `the leader (${own.leader_id || "?"}) and each node itself` : "each node itself (no leader's view)";

    // Merge: the members this node knows, the leader's view, and each node's own status.
    const ids = new Set((own.members || []).map((m) => m.id));
    const byLeader = new Map();
    for (const n of leaderView || []) { byLeader.set(n.id, n); ids.add(n.id); }
    const byPeer = new Map();
    for (const p of peerList) { byPeer.set(p.id, p); ids.add(p.id); }
    const members = new Map((own.members || []).map((m) => [m.id, m]));

    const rows = [];
    for (const id of [...ids].sort()) {
      const m = members.get(id) || {};
      const lv = byLeader.get(id);
      const peer = byPeer.get(id);
      const self = id === own.node_id ? own : (peer && peer.status) || null;
      const voter = lv ? lv.voter : m.voter;
      let roleTd;
      if (self) roleTd = roleCell(self.role === "follower" && voter === false ? "learner" : self.role);
      else if (peer || !peers.ok) roleTd = roleCell("no answer", peer && peer.error ? peer.error : errorText(peers));
      else roleTd = roleCell("unknown");
      const nameTd = el("th", { scope: "row" }, el("code", { text: id }));
      if (id === own.node_id) nameTd.append(el("span", { cls: "note", text: " (this page)" }));
      let reach = "unknown";
      if (lv) reach = lv.reachable ? "yes" : "no";
      const tr = el("tr", {
        "data-node-id": id, "data-role": roleTd.dataset.role,
        "data-voter": voter === undefined ? "unknown" : voter ? "yes" : "no",
      },
        nameTd,
        roleTd,
        el("td", { text: voter === undefined ? "—" : voter ? "voter" : "learner" }),
        el("td", { text: self ? fmt(self.term) : "—" }),
        el("td", { text: self ? fmt(self.leader_id) : "—" }),
        el("td", { cls: "num", text: self ? fmt(self.commit_index) : "—" }),
        el("td", { cls: "num", text: self ? fmt(self.applied_index) : "—" }),
        el("td", { cls: "num", text: lv ? fmt(lv.match_index) : "—" }),
        el("td", { cls: "num", text: lv ? fmt(lv.lag) : "—" }),
        el("td", { cls: "num", text: lv ? (lv.last_contact_ms === null ? "never" : `${lv.last_contact_ms} ms ago`) : "—" }),
        el("td", { cls: `reach reach-${reach}`, "data-reachable": reach },
          el("span", { "aria-hidden": "true", cls: "mark", text: reach === "yes" ? "✓" : reach === "no" ? "✕" : "?" }),
          ` ${reach}`),
        el("td", {}, el("code", { text: m.http_address || (lv && lv.http_address) || "—" })),
        el("td", {}, members.has(id) || lv ? el("button", {
          type: "button", cls: "small danger remove-node", "data-node-id": id, text: "Remove…",
          "aria-label": `Remove ${id} from the cluster`,
        }) : null));
      if (roleTd.dataset.role === "no answer") {
        if (!downSince.has(id)) downSince.set(id, Date.now());
        tr.dataset.downSince = String(downSince.get(id));
        roleTd.append(el("span", { cls: "note", text: ` for ${Math.round((Date.now() - downSince.get(id)) / 1000)} s` }));
      } else {
        downSince.delete(id);
      }
      if (self && self.role === "leader") tr.classList.add("is-leader");
      if (self && self.storage_error) {
        tr.dataset.storage = "failing";
        roleTd.append(el("span", { cls: "note storage-error", text: ` — writes suspended: ${self.storage_error}` }));
      }
      if (lv && lv.snapshot) {
        const s = lv.snapshot;
        const pct = s.bytes_total ? Math.floor((100 * s.bytes_sent) / s.bytes_total) : 0;
        roleTd.append(el("span", { cls: "note snapshot-progress",
          text: ` — receiving a snapshot: ${fmt(s.bytes_sent)} of ~${fmt(s.bytes_total)} bytes (${pct}%)` }));
      }
      rows.push(tr);
    }
    $("nodes-body").replaceChildren(...rows);

    // Transfer targets: every voter but the current leader; keep the user's choice.
    const select = $("transfer-target");
    const chosen = select.value;
    const voters = [...ids].sort().filter((id) => {
      const lv = byLeader.get(id);
      const m = members.get(id);
      const isVoter = lv ? lv.voter : m ? m.voter : false;
      return isVoter && id !== own.leader_id;
    });
    const options = [el("option", { value: "", text: "the most up-to-date voter" })];
    for (const id of voters) options.push(el("option", { value: id, text: id }));
    select.replaceChildren(...options);
    select.value = voters.includes(chosen) ? chosen : "";
  }

  // The leader's view is forwarded to the leader, which may be the node that just stopped
  // answering: the page does not wait for it longer than LEADER_VIEW_WAIT_MS (it uses the last
  // one, and the late answer next time), so a dead node is shown within two seconds.
  const LEADER_VIEW_WAIT_MS = 700;
  let leaderView = { ok: false, status: 0, data: null, network: "not asked yet" };
  let leaderViewPending = null;

  async function poll() {
    const started = Date.now();
    try {
      if (!leaderViewPending) {
        leaderViewPending = call("GET", `${API}/raft/nodes`).then((r) => { leaderView = r; leaderViewPending = null; });
      }
      const waitLeader = Promise.race([leaderViewPending, new Promise((ok) => setTimeout(ok, LEADER_VIEW_WAIT_MS))]);
      const [st, peers] = await Promise.all([call("GET", `${API}/status`), call("GET", "/ui/peers"), waitLeader]);
      renderCluster(st, leaderView, peers);
    } catch (e) {
      // A bug in rendering must not stop the polling; say so where it is seen.
      $("poll-state").textContent = `display error: ${e}`;
      $("poll-state").dataset.state = "error";
    } finally {
      setTimeout(poll, Math.max(100, POLL_MS - (Date.now() - started)));
    }
  }

  $("transfer-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const target = $("transfer-target").value;
    const out = $("transfer-result");
    const button = $("transfer-btn");
    button.disabled = true;
    out.textContent = `Transferring leadership${target ? ` to ${target}` : ""}…`;
    out.dataset.kind = "pending";
    const r = await call("POST", `${API}/raft/transfer-leadership`, {
      body: JSON.stringify(target ? { NodeID: target } : {}), timeoutMs: WRITE_TIMEOUT_MS,
    });
    button.disabled = false;
    if (r.ok && r.data && r.data.leader) {
      out.textContent = `OK: ${r.data.leader} is now the leader (${new Date().toLocaleTimeString()}).`;
      out.dataset.kind = "ok";
    } else {
      out.textContent = `Error: transfer failed — ${errorText(r)} (${new Date().toLocaleTimeString()}).`;
      out.dataset.kind = "error";
    }
  });

  whenSignedIn(poll);
  poll();
})();
