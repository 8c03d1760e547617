// Beaver-Vault monitor: the live change feed, an EventSource on /api/v1/watch; with a bearer
// token (EventSource cannot send it) the same Server-Sent Events read with fetch(). Uses the
// helpers of app.js (window.BV). All user data is inserted with textContent.
"use strict";

(() => {
  const { el, call, preview, API, authHeaders, TOKEN_KEY, forgetToken, whenSignedIn } = window.BV;
  const $ = (id) => document.getElementById(id);

  const FEED_MAX = 100;

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
          forgetToken((data && data.error) || "sign in to see this cluster");
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

  whenSignedIn(() => watch($("feed-prefix").value));
  (async () => {
    const who = await call("GET", `${API}/auth/whoami`);
    authOn = who.status === 401 || Boolean(who.ok && who.data && who.data.auth_enabled);
    watch($("feed-prefix").value);
  })();
})();
