// Beaver-Vault monitor: the key browser (GET /api/v1/kv by prefix, a page at a time) and the
// one-key editor (view, put, delete through /api/v1/kv/<key>; "." and ".." through the txn
// route). Uses the helpers of app.js (window.BV). All user data is inserted with textContent.
"use strict";

(() => {
  const { el, call, errorText, showError, showOk, fmt, preview, WRITE_TIMEOUT_MS, API, whenSignedIn } = window.BV;
  const $ = (id) => document.getElementById(id);

  // encodeURIComponent keeps "/" inside the one segment (%2F). A key that is exactly "." or ".."
  // cannot travel in a URL path at all: browsers remove dot segments, spelled %2E too (the URL
  // standard), so keyCall sends those keys through the txn route instead.
  const keyPath = (key) => `${API}/kv/${encodeURIComponent(key)}`;

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

  whenSignedIn(loadKeys);
  loadKeys();
})();
