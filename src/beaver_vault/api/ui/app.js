// Beaver-Vault monitor: plain JavaScript, no build step, no dependencies.
//
// Every second the page asks the node serving it for /api/v1/status (its own view),
// /api/v1/raft/nodes (the leader's view of every member: forwarded to the leader, so it
// fails when there is none) and /ui/peers (each member's own /api/v1/status, fetched by the
// serving node), and merges the three into one table. A failed source is reported in words
// and the rest of the page keeps working. The change feed is an EventSource on
// /api/v1/watch; the key browser and editor use /api/v1/kv. All user data is inserted with
// textContent, never as HTML.
//
// Sign-in (a cluster with authentication on): the first 401 shows the sign-in form; the user
// name and password are sent once, as HTTP Basic, to POST /api/v1/auth/tokens, and the bearer
// token that comes back is kept in sessionStorage (this tab only, gone when it closes) and
// sent as "Authorization: Bearer" on every call. EventSource cannot send that header, so with
// a token the change feed is read with fetch() instead. Every call says X-Beaver-Vault-UI, so
// the server's 401 carries only a Bearer challenge and the browser shows no login dialog of
// its own. With authentication off nothing of this is visible and nothing is sent.
"use strict";

(() => {
  const POLL_MS = 1000;
  const POLL_TIMEOUT_MS = 2500;
  const WRITE_TIMEOUT_MS = 15000;
  const FEED_MAX = 100;
  const API = "/api/v1";

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else if (name === "cls") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // encodeURIComponent keeps "/" inside the one segment (%2F). A key that is exactly "." or ".."
  // cannot travel in a URL path at all: browsers remove dot segments, spelled %2E too (the URL
  // standard), so keyCall sends those keys through the txn route instead.
  const keyPath = (key) => `${API}/kv/${encodeURIComponent(key)}`;

  // ------------------------------------------------------------------ credentials

  const TOKEN_KEY = "beaver-vault-token";
  const TOKEN_ID_KEY = "beaver-vault-token-id";
  const USER_KEY = "beaver-vault-user";
  const TOKEN_TTL_S = 12 * 3600;

  function authHeaders() {
    const headers = { "X-Beaver-Vault-UI": "1" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    return headers;
  }

  function base64Utf8(text) {
    let bin = "";
    for (const b of new TextEncoder().encode(text)) bin += String.fromCharCode(b);
    return btoa(bin);
  }

  let onSignedIn = () => {};

  function showSignIn(message) {
    const form = $("signin");
    if (!form) return;
    const wasHidden = form.hidden;
    form.hidden = false;
    $("signout").hidden = true;
    $("whoami").textContent = "";
    // The polls keep answering 401 while the form is up: keep what the form said last.
    if (message && (wasHidden || !$("signin-msg").textContent)) $("signin-msg").textContent = message;
    if (wasHidden) $("signin-user").focus();
  }

  function showSignedIn() {
    const user = sessionStorage.getItem(USER_KEY);
    $("signin").hidden = true;
    $("signout").hidden = !user;
    $("whoami").textContent = user ? `signed in as ${user}` : "";
  }

  async function signIn(user, password) {
    const msg = $("signin-msg");
    msg.textContent = "signing in…";
    try {
      const resp = await fetch(`${API}/auth/tokens`, {
        method: "POST",
        cache: "no-store",
        headers: {
          "X-Beaver-Vault-UI": "1",
          "Content-Type": "application/json",
          Authorization: `Basic ${base64Utf8(`${user}:${password}`)}`,
        },
        body: JSON.stringify({ ttl_s: TOKEN_TTL_S }),
      });
      const data = await resp.json().catch(() => null);
      if (resp.status !== 201 || !data || !data.token) {
        msg.textContent = `sign-in failed: ${(data && data.error) || `HTTP ${resp.status}`}`;
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, data.token);
      sessionStorage.setItem(TOKEN_ID_KEY, data.id);
      sessionStorage.setItem(USER_KEY, user);
      $("signin-password").value = "";
      msg.textContent = "";
      showSignedIn();
      onSignedIn();
    } catch (e) {
      msg.textContent = `sign-in failed: ${(e && e.message) || e}`;
    }
  }

  async function signOut() {
    const id = sessionStorage.getItem(TOKEN_ID_KEY);
    if (id) await call("DELETE", `${API}/auth/tokens/${encodeURIComponent(id)}`, { timeoutMs: WRITE_TIMEOUT_MS });
    for (const k of [TOKEN_KEY, TOKEN_ID_KEY, USER_KEY]) sessionStorage.removeItem(k);
    showSignIn("signed out");
  }

  // One HTTP call, never throwing: {ok, status, data, network}. status 0 = no answer at all.
  async function call(method, url, { body, timeoutMs = POLL_TIMEOUT_MS } = {}) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), timeoutMs);
    const sentToken = sessionStorage.getItem(TOKEN_KEY);
    const init = { method, signal: ctrl.signal, cache: "no-store", headers: authHeaders() };
    if (body !== undefined) {
      init.body = body;
      init.headers["Content-Type"] = "application/json";
    }
    try {
      const resp = await fetch(url, init);
      const text = await resp.text();
      let data = text;
      try { data = text ? JSON.parse(text) : null; } catch (e) { /* not JSON: keep the text */ }
      // A 401 to a call sent with the token in use now: it expired or was revoked, ask again.
      // A 401 to a call sent before the last sign-in (no token, or an older one) is stale.
      if (resp.status === 401 && sentToken === sessionStorage.getItem(TOKEN_KEY)) {
        for (const k of [TOKEN_KEY, TOKEN_ID_KEY, USER_KEY]) sessionStorage.removeItem(k);
        showSignIn((data && data.error) || "sign in to see this cluster");
      }
      return { ok: resp.ok, status: resp.status, data, network: null };
    } catch (e) {
      const why = e && e.name === "AbortError" ? `timed out after ${timeoutMs / 1000} s` : String((e && e.message) || e);
      return { ok: false, status: 0, data: null, network: why };
    } finally {
      clearTimeout(timer);
    }
  }

  function errorText(r) {
    if (r.status === 0) return `no answer (${r.network})`;
    const d = r.data;
    if (d && typeof d === "object" && d.error) return `HTTP ${r.status}: ${d.error}`;
    return `HTTP ${r.status}`;
  }

  // What a failed write means for the data: "unknown", "not_applied" or null (a read).
  function outcomeOf(r, isWrite) {
    if (!isWrite) return null;
    const d = r.data;
    if (d && typeof d === "object" && typeof d.outcome === "string") return d.outcome;
    // No answer, or an answer without a verdict from a server error: it may have happened.
    if (r.status === 0 || r.status >= 500) return "unknown";
    return "not_applied";
  }

  // Renders an error into a region: a heading line, the server's message, and the outcome.
  function showError(region, what, r, isWrite) {
    region.replaceChildren();
    region.dataset.kind = "error";
    const outcome = outcomeOf(r, isWrite);
    const box = el("div", { cls: "msg error", role: "alert" },
      el("p", {}, el("strong", { text: "Error: " }), `${what} failed — ${errorText(r)}`));
    if (outcome === "unknown") {
      box.dataset.outcome = "unknown";
      box.append(el("p", { cls: "outcome" }, el("strong", { text: "Outcome unknown: " }),
        "the change may or may not have been applied. Read the key (View) before retrying."));
    } else if (outcome === "not_applied") {
      box.dataset.outcome = "not_applied";
      box.append(el("p", { cls: "outcome" }, el("strong", { text: "Not applied: " }),
        "nothing changed; it is safe to retry."));
    }
    region.append(box);
  }

  function showOk(region, ...parts) {
    region.replaceChildren(el("div", { cls: "msg ok" }, el("p", {}, el("strong", { text: "OK: " }), ...parts)));
    region.dataset.kind = "ok";
  }

  const fmt = (v) => (v === null || v === undefined ? "—" : String(v));

  function preview(value, max = 80) {
    const text = JSON.stringify(value);
    if (text === undefined) return String(value);
    return text.length > max ? `${text.slice(0, max - 1)}…` : text;
  }

  // Shared with console.js (charts, Raft events, membership), loaded after this file.
  window.BV = { el, call, errorText, outcomeOf, showError, showOk, fmt, WRITE_TIMEOUT_MS, authHeaders };

  // ------------------------------------------------------------------ cluster

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

  // ------------------------------------------------------------------ key browser

  const page = { prefix: "", limit: 20, after: "", offset: 0, nextAfter: null, starts: [] };

  async function loadKeys() {
    const info = $("keys-info");
    const q = new URLSearchParams({ prefix: page.prefix, limit: String(page.limit) });
    if (page.after) q.set("after", page.after);
    info.textContent = "Loading…";
    const r = await call("GET", `${API}/kv?${q}`, { timeoutMs: WRITE_TIMEOUT_MS });
    if (!r.ok || !r.data || !Array.isArray(r.data.items)) {
      info.textContent = `Error: listing failed — ${errorText(r)}`;
      info.dataset.kind = "error";
      return;
    }
    const d = r.data;
    info.dataset.kind = "ok";
    const where = page.prefix ? `with prefix “${page.prefix}”` : "in the store";
    info.textContent = d.items.length
      ? `Keys ${page.offset + 1}–${page.offset + d.items.length} of ${d.count} ${where} (revision ${d.revision}).`
      : `No keys ${where} (revision ${d.revision}).`;
    const rows = d.items.map((item) => {
      const view = el("button", { type: "button", cls: "small", text: "View", "aria-label": `View ${item.key}` });
      view.addEventListener("click", () => { $("kv-key").value = item.key; viewKey(); });
      return el("tr", { "data-key": item.key },
        el("td", {}, el("code", { text: item.key })),
        el("td", { cls: "value" }, el("code", { text: preview(item.value) })),
        el("td", { cls: "num", text: fmt(item.mod_revision) }),
        el("td", { cls: "num", text: fmt(item.version) }),
        el("td", {}, view));
    });
    $("keys-body").replaceChildren(...rows);
    page.nextAfter = d.more ? d.next_after : null;
    $("next-page").disabled = !d.more;
    $("first-page").disabled = page.offset === 0;
  }

  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    page.prefix = $("prefix").value;
    page.limit = Number($("page-size").value) || 20;
    page.after = "";
    page.offset = 0;
    loadKeys();
  });
  $("next-page").addEventListener("click", () => {
    if (page.nextAfter === null) return;
    page.after = page.nextAfter;
    page.offset += page.limit;
    loadKeys();
  });
  $("first-page").addEventListener("click", () => {
    page.after = "";
    page.offset = 0;
    loadKeys();
  });

  // ------------------------------------------------------------------ one key

  // GET (with metadata), PUT or DELETE of one key; answers in the shape of the /kv/<key> routes.
  async function keyCall(method, key, body) {
    if (key !== "." && key !== "..") {
      const url = method === "GET" ? `${keyPath(key)}?meta=true` : keyPath(key);
      return call(method, url, { body, timeoutMs: WRITE_TIMEOUT_MS });
    }
    const op = method === "PUT" ? { op: "put", key, value: JSON.parse(body) } : { op: method === "GET" ? "get" : "delete", key };
    const r = await call("POST", `${API}/txn`, { body: JSON.stringify({ success: [op] }), timeoutMs: WRITE_TIMEOUT_MS });
    if (!r.ok || !r.data || !Array.isArray(r.data.results) || r.data.results.length !== 1) return r;
    const res = r.data.results[0];
    if (method === "GET" && !res.found) return { ok: false, status: 404, data: null, network: null };
    return { ...r, data: res };
  }

  function currentKey(region) {
    const key = $("kv-key").value;
    if (!key) {
      region.replaceChildren(el("div", { cls: "msg error", role: "alert" }, el("p", { text: "Error: enter a key first." })));
      region.dataset.kind = "error";
      $("kv-key").focus();
    }
    return key;
  }

  async function viewKey() {
    const region = $("kv-result");
    const key = currentKey(region);
    if (!key) return;
    const r = await keyCall("GET", key);
    if (r.status === 404) {
      region.replaceChildren(el("div", { cls: "msg" }, el("p", {}, "Key ", el("code", { text: key }), " does not exist.")));
      region.dataset.kind = "absent";
      return;
    }
    if (!r.ok || !r.data || typeof r.data !== "object") { showError(region, `Reading ${key}`, r, false); return; }
    const text = JSON.stringify(r.data.value, null, 2);
    $("kv-value").value = text;
    $("kv-as-string").checked = false;
    region.replaceChildren(el("div", { cls: "msg" },
      el("p", {}, el("code", { text: key }),
        ` — revision ${r.data.mod_revision}, version ${r.data.version}, created at revision ${r.data.create_revision}` +
        (r.data.expires_at_ms ? `, expires ${new Date(r.data.expires_at_ms).toLocaleString()}` : "")),
      el("pre", { cls: "value-view", text })));
    region.dataset.kind = "value";
  }

  $("kv-get").addEventListener("click", viewKey);

  $("kv-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const region = $("kv-result");
    const key = currentKey(region);
    if (!key) return;
    let body = $("kv-value").value;
    if ($("kv-as-string").checked) {
      body = JSON.stringify(body);
    } else {
      try { JSON.parse(body); } catch (e) {
        region.replaceChildren(el("div", { cls: "msg error", role: "alert" },
          el("p", {}, el("strong", { text: "Error: " }), `the value is not valid JSON (${e.message}). `,
            "Quote text, or tick “store the text as a JSON string”."),
          el("p", { cls: "outcome" }, el("strong", { text: "Not applied: " }), "nothing was sent.")));
        region.dataset.kind = "error";
        return;
      }
    }
    $("kv-put").disabled = true;
    const r = await keyCall("PUT", key, body);
    $("kv-put").disabled = false;
    if (!r.ok) { showError(region, `Put ${key}`, r, true); return; }
    showOk(region, el("code", { text: key }), ` ${r.data && r.data.created ? "created" : "updated"} at revision ${fmt(r.data && r.data.revision)}.`);
    loadKeys();
  });

  $("kv-delete").addEventListener("click", async () => {
    const region = $("kv-result");
    const key = currentKey(region);
    if (!key) return;
    $("kv-delete").disabled = true;
    const r = await keyCall("DELETE", key);
    $("kv-delete").disabled = false;
    if (!r.ok) { showError(region, `Delete ${key}`, r, true); return; }
    if (r.data && r.data.deleted) showOk(region, el("code", { text: key }), ` deleted at revision ${fmt(r.data.revision)}.`);
    else showOk(region, el("code", { text: key }), " did not exist; nothing to delete.");
    loadKeys();
  });

  // ------------------------------------------------------------------ live changes

  let source = null;
  let retryTimer = null;

  function feedState(state, text) {
    const span = $("feed-state");
    span.dataset.state = state;
    span.textContent = text;
  }

  function addFeedItem(ev) {
    const feed = $("feed");
    const type = String(ev.type || "?");
    const item = el("li", { "data-key": ev.key, "data-type": type, "data-revision": ev.revision },
      el("span", { cls: "rev", text: `#${ev.revision}` }), " ",
      el("span", { cls: `type type-${type.replace(/[^a-z]/g, "")}`, text: type.toUpperCase() }), " ",
      el("code", { cls: "key", text: ev.key }),
      type === "put" ? el("span", {}, " = ", el("code", { cls: "value", text: preview(ev.value, 60) })) : null,
      " ", el("time", { text: new Date().toLocaleTimeString() }));
    feed.prepend(item);
    while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
  }

  // null: not known yet; true: the node asks for credentials (whoami answered 401).
  let authOn = null;

  function watch(prefix) {
    if (source) source.close();
    source = null;
    clearTimeout(retryTimer);
    const url = `${API}/watch?${new URLSearchParams({ prefix })}`;
    if (sessionStorage.getItem(TOKEN_KEY)) {
      source = fetchWatch(prefix, url);  // EventSource cannot send the Authorization header
      return;
    }
    if (authOn !== false) {
      // Never open an EventSource that would be refused: its 401 (which cannot say it comes
      // from the console) would make the browser ask for a password in a dialog of its own.
      feedState("closed", authOn ? "sign in to see changes" : "starting…");
      return;
    }
    const es = new EventSource(url);
    source = es;
    feedState("connecting", "connecting…");
    es.onopen = () => { if (source === es) feedState("open", `live${prefix ? ` (prefix “${prefix}”)` : ""}`); };
    es.onmessage = (m) => {
      try { addFeedItem(JSON.parse(m.data)); } catch (e) { /* ignore a malformed event */ }
    };
    es.addEventListener("error", (m) => {
      if (source !== es) return;
      if (m.data) {
        // The server closed the watch with a reason; EventSource resumes from the last id.
        let reason = m.data;
        try { reason = JSON.parse(m.data).error || reason; } catch (e) { /* keep the text */ }
        feedState("reconnecting", `the node closed the stream (${reason}); resuming…`);
      } else if (es.readyState === EventSource.CLOSED) {
        // Refused outright (e.g. history gone, too many watchers, or sign-in needed): start again from now.
        feedState("closed", "stream refused; retrying in 2 s (changes in between may be missed)");
        retryTimer = setTimeout(() => watch(prefix), 2000);
      } else {
        feedState("reconnecting", "connection lost; reconnecting…");
      }
    });
  }

  // The change feed over fetch() with the bearer token: the same Server-Sent Events, parsed
  // here (id, event, data lines; a blank line ends an event), resumed with Last-Event-ID.
  function fetchWatch(prefix, url) {
    const ctrl = new AbortController();
    const handle = { close: () => ctrl.abort() };
    let lastId = null;
    const retry = (text) => {
      if (source !== handle) return;
      feedState("reconnecting", text);
      retryTimer = setTimeout(() => { if (source === handle) run(); }, 2000);
    };
    async function run() {
      feedState("connecting", "connecting…");
      const sentToken = sessionStorage.getItem(TOKEN_KEY);
      const headers = { ...authHeaders(), Accept: "text/event-stream" };
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      let resp;
      try {
        resp = await fetch(url, { headers, signal: ctrl.signal, cache: "no-store" });
      } catch (e) {
        if (!ctrl.signal.aborted) retry("connection lost; reconnecting…");
        return;
      }
      if (!resp.ok) {
        const data = await resp.json().catch(() => null);
        if (resp.status === 401 && sentToken === sessionStorage.getItem(TOKEN_KEY)) {
          for (const k of [TOKEN_KEY, TOKEN_ID_KEY, USER_KEY]) sessionStorage.removeItem(k);
          showSignIn((data && data.error) || "sign in to see this cluster");
        }
        feedState("closed", `stream refused (${(data && data.error) || `HTTP ${resp.status}`})`);
        if (resp.status !== 401 && resp.status !== 403) retry("stream refused; retrying in 2 s");
        return;
      }
      if (source === handle) feedState("open", `live${prefix ? ` (prefix “${prefix}”)` : ""}`);
      const reader = resp.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      let event = { id: null, type: "message", data: [] };
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let nl;
          while ((nl = buffer.indexOf("\n")) >= 0) {
            const line = buffer.slice(0, nl).replace(/\r$/, "");
            buffer = buffer.slice(nl + 1);
            if (line === "") {
              if (event.id !== null) lastId = event.id;
              if (event.data.length && event.type === "message") {
                try { addFeedItem(JSON.parse(event.data.join("\n"))); } catch (e) { /* ignore */ }
              } else if (event.type === "error") {
                let reason = event.data.join("\n");
                try { reason = JSON.parse(reason).error || reason; } catch (e) { /* keep the text */ }
                feedState("reconnecting", `the node closed the stream (${reason}); resuming…`);
              }
              event = { id: null, type: "message", data: [] };
            } else if (!line.startsWith(":")) {
              const colon = line.indexOf(":");
              const field = colon < 0 ? line : line.slice(0, colon);
              const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
              if (field === "data") event.data.push(val);
              else if (field === "id") event.id = val;
              else if (field === "event") event.type = val;
            }
          }
        }
      } catch (e) { /* aborted or lost */ }
      if (!ctrl.signal.aborted) retry("connection lost; reconnecting…");
    }
    run();
    return handle;
  }

  $("feed-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    watch($("feed-prefix").value);
  });
  $("feed-clear").addEventListener("click", () => $("feed").replaceChildren());

  // ------------------------------------------------------------------ start

  const signinForm = $("signin");
  if (signinForm) {
    signinForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      signIn($("signin-user").value, $("signin-password").value);
    });
    $("signout").addEventListener("click", () => signOut());
  }
  onSignedIn = () => {
    poll();
    loadKeys();
    watch($("feed-prefix").value);
  };
  if (sessionStorage.getItem(TOKEN_KEY)) showSignedIn();

  poll();
  loadKeys();
  (async () => {
    const who = await call("GET", `${API}/auth/whoami`);
    authOn = who.status === 401 || Boolean(who.ok && who.data && who.data.auth_enabled);
    watch($("feed-prefix").value);
  })();
})();
