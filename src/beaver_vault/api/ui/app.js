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
//
// Files (classic scripts, deferred, run in the order index.html lists them): this one (the
// helpers, HTTP calls, sign-in; shared as window.BV), cluster.js (the cluster table, leadership
// transfer), keys.js (the key browser and the one-key editor), feed.js (the change feed), then
// the console's charts.js and console.js.
"use strict";

(() => {
  const POLL_TIMEOUT_MS = 2500;
  const WRITE_TIMEOUT_MS = 15000;
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

  // What runs again after a sign-in (each part of the page adds its own: whenSignedIn).
  const signedInHooks = [];
  const whenSignedIn = (fn) => { signedInHooks.push(fn); };
  const onSignedIn = () => { for (const fn of signedInHooks) fn(); };

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

  // Drop the token (signed out, expired or revoked) and show the sign-in form.
  function forgetToken(message) {
    for (const k of [TOKEN_KEY, TOKEN_ID_KEY, USER_KEY]) sessionStorage.removeItem(k);
    showSignIn(message);
  }

  async function signOut() {
    const id = sessionStorage.getItem(TOKEN_ID_KEY);
    if (id) await call("DELETE", `${API}/auth/tokens/${encodeURIComponent(id)}`, { timeoutMs: WRITE_TIMEOUT_MS });
    forgetToken("signed out");
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
        forgetToken((data && data.error) || "sign in to see this cluster");
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


  // Shared with the scripts loaded after this file (index.html): cluster.js, keys.js, feed.js
  // and the console's console.js.
  window.BV = {
    el, call, errorText, outcomeOf, showError, showOk, fmt, preview, WRITE_TIMEOUT_MS, API, authHeaders,
    TOKEN_KEY, forgetToken, whenSignedIn,
  };

  // ------------------------------------------------------------------ start

  const signinForm = $("signin");
  if (signinForm) {
    signinForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      signIn($("signin-user").value, $("signin-password").value);
    });
    $("signout").addEventListener("click", () => signOut());
  }
  if (sessionStorage.getItem(TOKEN_KEY)) showSignedIn();
})();
