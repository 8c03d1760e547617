// Beaver-Vault API reference: renders /openapi.json (OpenAPI 3.1) into this page.
// Plain JavaScript, no dependencies, nothing loaded from anywhere but this node. Every text
// from the document is inserted with textContent (a tiny subset of Markdown is understood:
// paragraphs, `code` and **bold**).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const METHODS = ["get", "put", "post", "delete", "patch", "head", "options"];

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

  // Paragraphs with `code` and **bold** spans; everything else is text.
  function prose(text) {
    const box = el("div", { cls: "prose" });
    for (const para of String(text || "").split(/\n\s*\n/)) {
      if (!para.trim()) continue;
      const p = el("p");
      for (const part of para.replace(/\s*\n\s*/g, " ").split(/(`[^`]+`|\*\*[^*]+\*\*)/)) {
        if (part.startsWith("`") && part.endsWith("`") && part.length > 1) p.append(el("code", { text: part.slice(1, -1) }));
        else if (part.startsWith("**") && part.endsWith("**") && part.length > 3) p.append(el("strong", { text: part.slice(2, -2) }));
        else if (part) p.append(part);
      }
      box.append(p);
    }
    return box;
  }

  let spec = null;

  function resolve(obj) {
    let seen = 0;
    while (obj && typeof obj === "object" && typeof obj.$ref === "string" && seen++ < 20) {
      const path = obj.$ref.replace(/^#\//, "").split("/");
      obj = path.reduce((o, k) => (o ? o[k] : undefined), spec);
    }
    return obj || {};
  }

  const refName = (ref) => ref.split("/").pop();

  function typeText(s) {
    if (s.$ref) return refName(s.$ref);
    if (s.const !== undefined) return JSON.stringify(s.const);
    if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
    const t = Array.isArray(s.type) ? s.type.join(" | ") : s.type;
    if (t === "array" && s.items) return `array of ${typeText(s.items)}`;
    return t || (s.oneOf ? "one of" : s.allOf ? "all of" : "any JSON");
  }

  // A schema as a nested list, $refs to components/schemas shown as links (depth-bounded).
  function schemaTree(s, depth = 0) {
    const box = el("div", { cls: "schema" });
    if (!s) return box;
    if (s.$ref) {
      const name = refName(s.$ref);
      box.append(el("a", { href: `#schema-${name}`, cls: "type", text: name }));
      return box;
    }
    const line = el("span", { cls: "type", text: typeText(s) });
    box.append(line);
    const extra = [];
    if (s.default !== undefined) extra.push(`default ${JSON.stringify(s.default)}`);
    if (s.minimum !== undefined) extra.push(`≥ ${s.minimum}`);
    if (s.maximum !== undefined) extra.push(`≤ ${s.maximum}`);
    if (s.maxLength !== undefined) extra.push(`at most ${s.maxLength} characters`);
    if (extra.length) box.append(el("span", { cls: "desc", text: ` (${extra.join(", ")})` }));
    if (s.description) box.append(el("span", { cls: "desc", text: ` — ${s.description}` }));
    if (depth > 6) return box;
    for (const key of ["oneOf", "anyOf", "allOf"]) {
      if (Array.isArray(s[key])) {
        const ul = el("ul");
        for (const sub of s[key]) ul.append(el("li", {}, schemaTree(sub, depth + 1)));
        box.append(ul);
      }
    }
    if (s.items && !s.items.$ref && (s.items.properties || s.items.oneOf)) box.append(schemaTree(s.items, depth + 1));
    if (s.properties) {
      const required = new Set(s.required || []);
      const ul = el("ul");
      for (const [name, sub] of Object.entries(s.properties)) {
        ul.append(el("li", {}, el("code", { text: name }),
          required.has(name) ? el("span", { cls: "req", text: "*" }) : null, ": ", schemaTree(sub, depth + 1)));
      }
      box.append(ul);
    }
    if (s.additionalProperties && typeof s.additionalProperties === "object") {
      box.append(el("ul", {}, el("li", {}, el("code", { text: "<name>" }), ": ", schemaTree(s.additionalProperties, depth + 1))));
    }
    return box;
  }

  function content(c) {
    const out = [];
    for (const [mime, media] of Object.entries(c || {})) {
      out.push(el("div", {}, el("code", { text: mime }), " ", schemaTree(media.schema)));
    }
    return out;
  }

  function paramsTable(params) {
    if (!params.length) return null;
    const rows = params.map((raw) => {
      const p = resolve(raw);
      return el("tr", {},
        el("td", {}, el("code", { text: p.name }), p.required ? el("span", { cls: "req", text: " *" }) : null),
        el("td", { text: p.in }),
        el("td", {}, schemaTree(p.schema || {})),
        el("td", {}, prose(p.description)));
    });
    return el("table", { cls: "params" },
      el("caption", { text: "Parameters (* required)" }),
      el("thead", {}, el("tr", {}, el("th", { text: "Name" }), el("th", { text: "In" }), el("th", { text: "Schema" }), el("th", { text: "Description" }))),
      el("tbody", {}, ...rows));
  }

  function responsesTable(responses) {
    const rows = Object.entries(responses || {}).sort(([a], [b]) => a.localeCompare(b)).map(([code, raw]) => {
      const r = resolve(raw);
      const headers = Object.entries(r.headers || {}).map(([name, h]) => {
        const hh = resolve(h);
        return el("div", {}, "header ", el("code", { text: name }), hh.description ? ` — ${hh.description}` : "");
      });
      return el("tr", { "data-status": code },
        el("td", {}, el("span", { cls: `status status-${code[0]}`, text: code })),
        el("td", {}, prose(r.description), ...headers, ...content(r.content)));
    });
    return el("table", { cls: "responses" },
      el("caption", { text: "Responses" }),
      el("thead", {}, el("tr", {}, el("th", { text: "Status" }), el("th", { text: "Meaning, headers and body" }))),
      el("tbody", {}, ...rows));
  }

  function opId(method, path) { return `op-${method}-${path.replace(/[^a-zA-Z0-9]+/g, "-")}`; }

  function render() {
    document.title = `${spec.info.title} ${spec.info.version} · Beaver-Vault`;
    $("intro").replaceChildren(el("h2", { text: `${spec.info.title} (version ${spec.info.version}, OpenAPI ${spec.openapi})` }),
      prose(spec.info.description));
    const byTag = new Map((spec.tags || []).map((t) => [t.name, { tag: t, ops: [] }]));
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const method of METHODS) {
        const op = item[method];
        if (!op) continue;
        const tag = (op.tags && op.tags[0]) || "other";
        if (!byTag.has(tag)) byTag.set(tag, { tag: { name: tag }, ops: [] });
        byTag.get(tag).ops.push({ path, method, op, shared: item.parameters || [] });
      }
    }
    const toc = [];
    const sections = [];
    let count = 0;
    for (const { tag, ops } of byTag.values()) {
      if (!ops.length) continue;
      toc.push(el("h2", { text: tag.name }), el("ul", {}, ...ops.map(({ path, method, op }) =>
        el("li", {}, el("a", { href: `#${opId(method, path)}` }, el("span", { cls: `method method-${method}`, text: method }), " ",
          el("code", { text: path }))))));
      const section = el("section", { "aria-labelledby": `tag-${tag.name}` },
        el("h2", { id: `tag-${tag.name}`, text: tag.name }), tag.description ? prose(tag.description) : null);
      for (const { path, method, op, shared } of ops) {
        count += 1;
        section.append(el("article", { cls: "op", id: opId(method, path), "data-method": method.toUpperCase(), "data-path": path },
          el("h3", {}, el("span", { cls: `method method-${method}`, text: method }), el("code", { text: path }),
            el("span", { cls: "summary-text", text: op.summary || "" }),
            op["x-pending-merge"] ? el("span", { cls: "pending", text: "(added by a branch not merged yet)" }) : null),
          op.description ? prose(op.description) : null,
          paramsTable([...shared, ...(op.parameters || [])]),
          op.requestBody ? el("div", {}, el("h4", { text: `Request body${resolve(op.requestBody).required ? " (required)" : ""}` }),
            ...content(resolve(op.requestBody).content)) : null,
          responsesTable(op.responses)));
      }
      sections.push(section);
    }
    $("toc").replaceChildren(...toc);
    $("operations").replaceChildren(...sections);
    const schemas = Object.entries((spec.components && spec.components.schemas) || {}).map(([name, s]) =>
      el("div", { id: `schema-${name}`, cls: "op" }, el("h3", {}, el("code", { text: name })), schemaTree(s)));
    $("schemas").replaceChildren(el("h2", { text: "Schemas" }), ...schemas);
    $("docs-state").textContent = `${count} operations.`;
    $("docs-state").dataset.state = "ok";
  }

  async function load() {
    try {
      const resp = await fetch("/openapi.json", { cache: "no-store" });
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      spec = await resp.json();
      render();
    } catch (e) {
      $("docs-state").textContent = `Could not load /openapi.json: ${e}`;
      $("docs-state").dataset.state = "error";
    }
  }
  load();
})();
