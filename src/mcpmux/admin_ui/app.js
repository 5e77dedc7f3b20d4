// The mcpmux admin UI: an overview of the gateway (polled) and a playground that
// speaks MCP to the gateway from the browser. No build step: Preact + HTM, vendored.

import { html, render, useEffect, useRef, useState, useCallback } from "./vendor/preact-htm.mjs";
import { McpClient, McpError } from "./mcp.js";
import { SchemaForm, collect, initialValues } from "./schema-form.js";

const TOKEN_KEY = "mcpmux.adminToken";
const POLL_MS = 1500;

function adminToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

class Unauthorized extends Error {}

async function api(path) {
  const token = adminToken();
  const r = await fetch(path, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  if (r.status === 401) throw new Unauthorized("the admin token is missing or wrong");
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

function ago(seconds) {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} d`;
}

// -- token -------------------------------------------------------------------
function TokenPrompt({ onDone, wrong }) {
  const [value, setValue] = useState("");
  const submit = (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, value.trim());
    onDone();
  };
  return html`<div class="center"><form class="card token-card" onSubmit=${submit}>
    <h2>Admin token</h2>
    <p class="muted">This gateway's admin API needs its token (<code>admin.token</code>). It is kept in this
      tab's session storage only.</p>
    ${wrong ? html`<p class="error-text">That token was refused.</p>` : ""}
    <label for="admin-token">Token</label>
    <input id="admin-token" type="password" autocomplete="current-password" value=${value}
      onInput=${(e) => setValue(e.currentTarget.value)} autofocus />
    <button class="primary" type="submit" disabled=${!value.trim()}>Sign in</button>
  </form></div>`;
}

// -- overview ----------------------------------------------------------------
function StateBadge({ state }) {
  return html`<span class=${`badge state-${state}`} data-state=${state}>${state}</span>`;
}

function Counts({ counts }) {
  const c = counts || {};
  return html`<span class="counts" title="tools / prompts / resources / templates">
    ${c.tools ?? 0}<small> tools</small> · ${c.prompts ?? 0}<small> prompts</small> · ${c.resources ?? 0}<small> resources</small>
    ${c.resourceTemplates ? html` · ${c.resourceTemplates}<small> templates</small>` : ""}</span>`;
}

// What a target's tool curation hid, renamed or overrode, and why (from /api/targets).
function Curation({ report }) {
  if (!report) return "";
  const hidden = report.hidden || [], renamed = report.renamed || [], overridden = report.overridden || [],
    unused = report.unused || [];
  const parts = [];
  if (hidden.length) parts.push(`${hidden.length} hidden`);
  if (renamed.length) parts.push(`${renamed.length} renamed`);
  if (overridden.length) parts.push(`${overridden.length} overridden`);
  if (unused.length) parts.push(`${unused.length} unused`);
  if (!parts.length) return "";
  return html`<details class="curation"><summary>${parts.join(" · ")}</summary><ul>
    ${hidden.map((h) => html`<li><code>${h.tool}</code> hidden: ${h.reason}</li>`)}
    ${renamed.map((r) => html`<li><code>${r.tool}</code> shown as <code>${r.as}</code></li>`)}
    ${overridden.map((o) => html`<li><code>${o.tool}</code>: ${(o.fields || []).join(", ")} overridden</li>`)}
    ${unused.map((u) => html`<li class="warn-text"><code>${u.tool}</code> unused: ${u.reason} (a typo?)</li>`)}
  </ul></details>`;
}

function Overview({ data, error }) {
  if (!data) return html`<p class="muted pad">${error ? `Cannot reach the admin API: ${error}` : "Loading…"}</p>`;
  const targets = data.targets || [];
  const ready = targets.filter((t) => t.state === "ready").length;
  const failed = targets.filter((t) => t.state === "failed").length;
  const cfg = data.config || {};
  return html`<div class="overview">
    ${error ? html`<div class="banner warn">Live updates paused: ${error}</div>` : ""}
    <div class="stats">
      <div class="stat"><span class="stat-value" id="stat-ready">${ready}/${targets.length}</span><span class="stat-label">targets ready</span></div>
      <div class="stat"><span class=${`stat-value ${failed ? "bad" : ""}`}>${failed}</span><span class="stat-label">failed</span></div>
      <div class="stat"><span class="stat-value">${data.sessions}</span><span class="stat-label">client sessions</span></div>
      <div class="stat"><span class="stat-value">${ago(data.uptime)}</span><span class="stat-label">uptime</span></div>
      <div class="stat"><span class=${`stat-value ${cfg.valid === false ? "bad" : ""}`}>${cfg.valid === false ? "invalid" : "valid"}</span><span class="stat-label">config</span></div>
    </div>
    <section class="card">
      <h2>Targets</h2>
      <table class="targets">
        <thead><tr><th>Name</th><th>Kind</th><th>Transport</th><th>State</th><th>Catalog</th><th>Restarts</th><th>Source</th><th>Last error</th></tr></thead>
        <tbody>
          ${targets.map((t) => html`<tr key=${t.name} data-target=${t.name}>
            <td class="name">${t.name}${t.server ? html`<div class="sub">${t.server.name} ${t.server.version || ""}</div>` : ""}</td>
            <td>${t.kind}${t.pid ? html`<div class="sub pid">pid ${t.pid}</div>` : ""}</td>
            <td>${t.transport || "—"}${t.era ? html`<div class="sub">${t.era}</div>` : ""}</td>
            <td><${StateBadge} state=${t.state} /></td>
            <td><${Counts} counts=${t.counts} /><${Curation} report=${t.curation} /></td>
            <td class="num">${t.restarts}</td>
            <td>${t.source}</td>
            <td class="last-error">${t.lastError || html`<span class="muted">—</span>`}</td>
          </tr>`)}
          ${targets.length ? "" : html`<tr><td colspan="8" class="muted">No targets configured.</td></tr>`}
        </tbody>
      </table>
      ${(data.conflicts || []).length ? html`<div class="banner warn">Name conflicts: ${data.conflicts.map((c) => JSON.stringify(c)).join("; ")}</div>` : ""}
    </section>
    ${(data.agents || []).length ? html`<section class="card">
      <h2>A2A agents</h2>
      <table class="targets agents">
        <thead><tr><th>Name</th><th>Card</th><th>State</th><th>URL</th><th>Last error</th></tr></thead>
        <tbody>
          ${data.agents.map((a) => html`<tr key=${a.name} data-agent=${a.name}>
            <td class="name">${a.name}</td>
            <td>${a.card ? html`${a.card.name}<div class="sub">${a.card.version || ""}</div>` : html`<span class="muted">—</span>`}</td>
            <td><${StateBadge} state=${a.state} /></td>
            <td><code>${a.url}</code></td>
            <td class="last-error">${a.lastError || html`<span class="muted">—</span>`}</td>
          </tr>`)}
        </tbody>
      </table>
    </section>` : ""}
    <div class="grid3">
      <section class="card">
        <h2>Listeners</h2>
        <dl class="kv">${Object.entries(data.listeners || {}).map(([k, v]) => html`<dt>${k}</dt><dd><code>${v}</code></dd>`)}</dl>
      </section>
      <section class="card">
        <h2>Discovery</h2>
        <dl class="kv">${Object.entries(data.discovery || {}).map(([k, v]) => html`<dt>${k}</dt><dd>${describeSource(k, v)}</dd>`)}</dl>
      </section>
      <section class="card">
        <h2>Config</h2>
        <dl class="kv">
          <dt>status</dt><dd>${cfg.valid === false ? html`<span class="error-text">invalid — the last good config is running</span>` : "valid"}</dd>
          <dt>watched</dt><dd>${cfg.watching ? "yes" : "no"}</dd>
          ${cfg.path ? html`<dt>file</dt><dd><code>${cfg.path}</code></dd>` : ""}
          <dt>tracing</dt><dd>${data.tracing ? "on (OTLP)" : "off"}</dd>
          <dt>version</dt><dd>mcpmux ${data.version}</dd>
        </dl>
        ${(cfg.errors || []).length ? html`<ul class="errors">${cfg.errors.map((e) => html`<li>${typeof e === "string" ? e : JSON.stringify(e)}</li>`)}</ul>` : ""}
      </section>
    </div>
  </div>`;
}

function describeSource(name, v) {
  if (!v || typeof v !== "object") return String(v);
  if (name === "file") return v.watching ? "watching the config file" : "not watching (no config file)";
  const parts = [];
  if ("connected" in v) parts.push(v.connected ? "connected" : "disconnected");
  if ("targets" in v) parts.push(`${Array.isArray(v.targets) ? v.targets.length : v.targets} targets`);
  if (v.error || v.lastError) parts.push(v.error || v.lastError);
  return parts.length ? parts.join(", ") : JSON.stringify(v);
}

// -- playground: results -----------------------------------------------------
function Content({ item }) {
  if (item.type === "text") return html`<pre class="content-text">${item.text}</pre>`;
  if (item.type === "image") return html`<img class="content-image" alt="image result" src=${`data:${item.mimeType};base64,${item.data}`} />`;
  if (item.type === "audio") return html`<audio controls src=${`data:${item.mimeType};base64,${item.data}`}></audio>`;
  if (item.type === "resource_link") return html`<div class="content-link">🔗 <code>${item.uri}</code> ${item.name || ""}</div>`;
  if (item.type === "resource") {
    const r = item.resource || {};
    return html`<div class="content-resource"><div class="sub"><code>${r.uri}</code> ${r.mimeType || ""}</div>
      ${"text" in r ? html`<pre class="content-text">${r.text}</pre>` : html`<span class="muted">${(r.blob || "").length} bytes of base64</span>`}</div>`;
  }
  return html`<pre class="json">${JSON.stringify(item, null, 2)}</pre>`;
}

function Result({ outcome }) {
  if (!outcome) return null;
  if (outcome.running) return html`<div class="result running" aria-live="polite">Running…</div>`;
  if (outcome.failure) {
    const e = outcome.failure;
    return html`<div class="result is-error" role="alert" data-outcome="error">
      <div class="result-head"><span class="badge state-failed">Error</span>
        ${e.code !== undefined ? html`<code>${e.code}</code>` : ""} ${e.message}</div>
      ${e.data !== undefined ? html`<pre class="json">${JSON.stringify(e.data, null, 2)}</pre>` : ""}</div>`;
  }
  const r = outcome.result || {};
  const isError = r.isError === true;
  const contents = r.content || r.contents || (r.messages ? r.messages.map((m) => ({ ...m.content, role: m.role })) : []);
  return html`<div class=${`result ${isError ? "is-error" : "is-ok"}`} data-outcome=${isError ? "tool-error" : "ok"} role=${isError ? "alert" : "status"}>
    <div class="result-head">${isError ? html`<span class="badge state-failed">Tool error</span>` : html`<span class="badge state-ready">Result</span>`}
      <span class="muted">${outcome.ms} ms</span></div>
    ${r.description ? html`<p>${r.description}</p>` : ""}
    ${contents.map((c, i) => html`<div key=${i}>${c.role ? html`<div class="sub">${c.role}</div>` : ""}${c.uri && !c.type
      ? html`<${Content} item=${{ type: "resource", resource: c }} />` : html`<${Content} item=${c} />`}</div>`)}
    ${r.structuredContent !== undefined ? html`<details open class="structured"><summary>structuredContent</summary>
      <pre class="json">${JSON.stringify(r.structuredContent, null, 2)}</pre></details>` : ""}
    <details class="raw"><summary>Raw result</summary><pre class="json">${JSON.stringify(r, null, 2)}</pre></details>
  </div>`;
}

// -- playground: elicitation ---------------------------------------------------
function Elicitation({ request, onAnswer }) {
  const schema = request.params.requestedSchema || { properties: {} };
  const [values, setValues] = useState(() => initialValues(schema));
  const [err, setErr] = useState(null);
  const accept = (e) => {
    e.preventDefault();
    try {
      onAnswer({ action: "accept", content: collect(schema, values) });
    } catch (x) {
      setErr(x.message);
    }
  };
  return html`<div class="modal-backdrop"><form class="modal card" role="dialog" aria-label="Elicitation request" onSubmit=${accept}>
    <h2>The server asks</h2>
    <p class="elicit-message">${request.params.message}</p>
    ${request.params.mode === "url" ? html`<p>Open: <a href=${request.params.url} target="_blank" rel="noopener">${request.params.url}</a></p>` : ""}
    <${SchemaForm} schema=${schema} values=${values} idPrefix="elicit" onChange=${(k, v) => setValues({ ...values, [k]: v })} />
    ${err ? html`<p class="error-text">${err}</p>` : ""}
    <div class="row end">
      <button type="button" onClick=${() => onAnswer({ action: "cancel" })}>Cancel</button>
      <button type="button" onClick=${() => onAnswer({ action: "decline" })}>Decline</button>
      <button type="submit" class="primary">Accept</button>
    </div>
  </form></div>`;
}

// -- playground ----------------------------------------------------------------
function targetOf(name, targets) {
  const prefix = name.split("_")[0];
  return targets.includes(prefix) ? prefix : null;
}

function ItemList({ items, selected, onSelect, targets, keyOf }) {
  const [filter, setFilter] = useState("");
  const f = filter.toLowerCase();
  const shown = items.filter((it) => keyOf(it).toLowerCase().includes(f) || (it.description || "").toLowerCase().includes(f));
  const groups = new Map();
  for (const it of shown) {
    const g = (it.name && targetOf(it.name, targets)) || "";
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(it);
  }
  return html`<div class="item-list">
    <input class="filter" type="search" placeholder="Filter" aria-label="Filter" value=${filter} onInput=${(e) => setFilter(e.currentTarget.value)} />
    ${[...groups.entries()].map(([g, list]) => html`<div class="group" key=${g}>
      ${g ? html`<div class="group-head">${g} <span class="muted">${list.length}</span></div>` : ""}
      <ul role="listbox">${list.map((it) => html`<li key=${keyOf(it)}><button role="option" aria-selected=${selected === keyOf(it)}
        class=${`item ${selected === keyOf(it) ? "selected" : ""}`} onClick=${() => onSelect(it)} title=${it.description || ""}>
        <span class="item-name">${keyOf(it)}</span>${it.title && it.title !== it.name ? html`<span class="sub">${it.title}</span>` : ""}</button></li>`)}</ul></div>`)}
    ${shown.length ? "" : html`<p class="muted pad">Nothing here.</p>`}
  </div>`;
}

function Playground({ targets, servers }) {
  const defaultUrl = `${location.origin}/mcp`;
  const [url, setUrl] = useState(defaultUrl);
  const [bearer, setBearer] = useState("");
  const [client, setClient] = useState(null);
  const [status, setStatus] = useState("disconnected");
  const [connError, setConnError] = useState(null);
  const [lists, setLists] = useState({ tools: [], prompts: [], resources: [], resourceTemplates: [] });
  const [tab, setTab] = useState("tools");
  const [selected, setSelected] = useState(null);
  const [values, setValues] = useState({});
  const [outcome, setOutcome] = useState(null);
  const [progress, setProgress] = useState(null);
  const [events, setEvents] = useState([]);
  const [elicit, setElicit] = useState(null);
  const [level, setLevel] = useState("");
  const [uri, setUri] = useState("");
  const pending = useRef(null);

  const addEvent = useCallback((kind, text) => setEvents((ev) => [{ t: new Date().toLocaleTimeString(), kind, text }, ...ev].slice(0, 200)), []);

  const refresh = async (c) => {
    const caps = c.capabilities || {};
    const [tools, prompts, resources, resourceTemplates] = await Promise.all([
      c.listAll("tools/list", "tools"),
      caps.prompts ? c.listAll("prompts/list", "prompts") : [],
      caps.resources ? c.listAll("resources/list", "resources") : [],
      caps.resources ? c.listAll("resources/templates/list", "resourceTemplates") : [],
    ]);
    setLists({ tools, prompts, resources, resourceTemplates });
  };

  const connect = async () => {
    setStatus("connecting");
    setConnError(null);
    const headers = {};
    const token = adminToken();
    if (token && url.startsWith(location.origin)) headers["X-Mcpmux-Admin-Token"] = token;
    if (bearer.trim()) headers.Authorization = `Bearer ${bearer.trim()}`;
    const c = new McpClient(url, {
      headers,
      onNotification: (msg) => {
        const p = msg.params || {};
        if (msg.method === "notifications/message") addEvent(`log ${p.level}`, `${p.logger ? `[${p.logger}] ` : ""}${typeof p.data === "string" ? p.data : JSON.stringify(p.data)}`);
        else if (msg.method === "notifications/progress") addEvent("progress", `${p.progress}${p.total ? ` / ${p.total}` : ""}${p.message ? ` — ${p.message}` : ""}`);
        else addEvent("notification", `${msg.method} ${msg.params ? JSON.stringify(msg.params) : ""}`);
        if (msg.method && msg.method.endsWith("/list_changed")) refresh(c).catch(() => {});
      },
      onRequest: (msg) => {
        if (msg.method !== "elicitation/create") throw new Error(`${msg.method} is not supported by the playground`);
        addEvent("request", `elicitation/create: ${msg.params.message}`);
        return new Promise((resolve) => {
          pending.current = resolve;
          setElicit(msg);
        });
      },
    });
    try {
      await c.connect();
      await refresh(c);
      setClient(c);
      setStatus("connected");
      addEvent("session", `connected to ${c.serverInfo ? c.serverInfo.name : "server"} (${c.protocolVersion})`);
    } catch (e) {
      setStatus("disconnected");
      setConnError(e.message);
    }
  };

  const disconnect = async () => {
    if (client) await client.close();
    setClient(null);
    setStatus("disconnected");
    setSelected(null);
    setOutcome(null);
    setLists({ tools: [], prompts: [], resources: [], resourceTemplates: [] });
  };

  useEffect(() => { connect(); return () => {}; }, []);

  const select = (item) => {
    setSelected(item);
    setOutcome(null);
    setProgress(null);
    if (tab === "tools") setValues(initialValues(item.inputSchema));
    else if (tab === "prompts") setValues(initialValues(promptSchema(item)));
    else if (tab === "templates") setUri(item.uriTemplate);
  };

  const run = async (e) => {
    e.preventDefault();
    const started = performance.now();
    let method, params;
    try {
      if (tab === "tools") { method = "tools/call"; params = { name: selected.name, arguments: collect(selected.inputSchema, values) }; }
      else if (tab === "prompts") { method = "prompts/get"; params = { name: selected.name, arguments: stringArgs(collect(promptSchema(selected), values)) }; }
      else { method = "resources/read"; params = { uri: tab === "resources" ? selected.uri : uri }; }
    } catch (x) {
      setOutcome({ failure: { message: x.message } });
      return;
    }
    setOutcome({ running: true });
    setProgress(null);
    try {
      const result = await client.request(method, params, { onProgress: (p) => setProgress(p) });
      setOutcome({ result, ms: Math.round(performance.now() - started) });
    } catch (x) {
      setOutcome({ failure: x instanceof McpError ? { code: x.code, message: x.message, data: x.data } : { message: x.message } });
    }
  };

  const answer = (res) => {
    const resolve = pending.current;
    pending.current = null;
    setElicit(null);
    addEvent("response", `elicitation: ${res.action}`);
    if (resolve) resolve(res);
  };

  const setLogLevel = async (lv) => {
    setLevel(lv);
    if (!client || !lv) return;
    try { await client.request("logging/setLevel", { level: lv }); addEvent("session", `log level ${lv}`); }
    catch (x) { addEvent("error", `logging/setLevel: ${x.message}`); }
  };

  const names = targets.map((t) => t.name);
  const tabs = [["tools", "Tools", lists.tools], ["prompts", "Prompts", lists.prompts], ["resources", "Resources", lists.resources],
    ["templates", "Templates", lists.resourceTemplates]];
  const current = tabs.find((t) => t[0] === tab)[2];
  const keyOf = tab === "resources" ? (r) => r.uri : tab === "templates" ? (r) => r.uriTemplate : (r) => r.name;
  const selKey = selected ? keyOf(selected) : null;
  const verb = tab === "tools" ? "Call tool" : tab === "prompts" ? "Get prompt" : "Read resource";

  return html`<div class="playground">
    <form class="connect-bar card" onSubmit=${(e) => { e.preventDefault(); client ? disconnect() : connect(); }}>
      ${(servers || []).length ? html`<label for="mcp-server">Server</label>
      <select id="mcp-server" disabled=${!!client} onChange=${(e) => setUrl(`${location.origin}/mcp${e.currentTarget.value ? `/${e.currentTarget.value}` : ""}`)}>
        <option value="">all targets (/mcp)</option>
        ${servers.map((v) => html`<option value=${v.name}>${v.name}${v.search ? " (search)" : ""}</option>`)}
      </select>` : ""}
      <label for="mcp-url">MCP endpoint</label>
      <input id="mcp-url" class="grow" value=${url} onInput=${(e) => setUrl(e.currentTarget.value)} disabled=${!!client} />
      <label for="mcp-bearer" class="sr-only">Bearer token for the MCP endpoint</label>
      <input id="mcp-bearer" type="password" placeholder="MCP bearer token (if auth is on)" value=${bearer}
        onInput=${(e) => setBearer(e.currentTarget.value)} disabled=${!!client} />
      <span class=${`conn conn-${status}`} id="conn-status">${status}</span>
      <button type="submit" class=${client ? "" : "primary"} disabled=${status === "connecting"}>${client ? "Disconnect" : "Connect"}</button>
    </form>
    ${connError ? html`<div class="banner error">Could not connect: ${connError}</div>` : ""}
    <div class="pg-main">
      <aside class="card sidebar">
        <div class="subtabs" role="tablist">${tabs.map(([k, label, list]) => html`<button role="tab" aria-selected=${tab === k}
          class=${tab === k ? "active" : ""} onClick=${() => { setTab(k); setSelected(null); setOutcome(null); }}>${label} <span class="count">${list.length}</span></button>`)}</div>
        <${ItemList} items=${current} selected=${selKey} onSelect=${select} targets=${names} keyOf=${keyOf} />
      </aside>
      <section class="card detail">
        ${selected ? html`<form onSubmit=${run} class="call-form">
          <div class="detail-head"><h2 id="selected-name">${selKey}</h2>
            ${tab === "tools" && targetOf(selected.name, names) ? html`<span class="badge">${targetOf(selected.name, names)}</span>` : ""}</div>
          ${selected.description ? html`<p class="description">${selected.description}</p>` : ""}
          ${tab === "tools" ? html`<${SchemaForm} schema=${selected.inputSchema} values=${values} idPrefix="arg" onChange=${(k, v) => setValues({ ...values, [k]: v })} />` : ""}
          ${tab === "prompts" ? html`<${SchemaForm} schema=${promptSchema(selected)} values=${values} idPrefix="arg" onChange=${(k, v) => setValues({ ...values, [k]: v })} />` : ""}
          ${tab === "templates" ? html`<div class="field"><div class="label-row"><label for="template-uri">uri</label></div>
            <input id="template-uri" value=${uri} onInput=${(e) => setUri(e.currentTarget.value)} /></div>` : ""}
          <div class="row"><button type="submit" class="primary" disabled=${!client || (outcome && outcome.running)}>${verb}</button>
            ${progress ? html`<div class="progress" aria-label="progress"><progress max=${progress.total || 100} value=${progress.progress}></progress>
              <span class="muted">${progress.progress}${progress.total ? ` / ${progress.total}` : ""} ${progress.message || ""}</span></div>` : ""}</div>
        </form>
        <${Result} outcome=${outcome} />` : html`<div class="empty"><p class="muted">${client ? `Select one of the ${current.length} ${tab} on the left.` : "Connect to list what the gateway offers."}</p></div>`}
      </section>
      <aside class="card events">
        <div class="events-head"><h2>Activity</h2>
          <label for="log-level" class="sr-only">Log level</label>
          <select id="log-level" value=${level} onChange=${(e) => setLogLevel(e.currentTarget.value)} disabled=${!client}>
            <option value="">log level…</option>
            ${["debug", "info", "notice", "warning", "error"].map((l) => html`<option value=${l}>${l}</option>`)}
          </select></div>
        <ul class="event-list" aria-live="polite">${events.map((ev, i) => html`<li key=${events.length - i} class=${`ev ev-${ev.kind.split(" ")[0]}`}>
          <span class="ev-time">${ev.t}</span><span class="ev-kind">${ev.kind}</span><span class="ev-text">${ev.text}</span></li>`)}</ul>
        ${events.length ? "" : html`<p class="muted pad">Progress, log lines and server requests show up here as they arrive.</p>`}
      </aside>
    </div>
    ${elicit ? html`<${Elicitation} request=${elicit} onAnswer=${answer} />` : ""}
  </div>`;
}

function promptSchema(prompt) {
  const properties = {};
  const required = [];
  for (const a of prompt.arguments || []) {
    properties[a.name] = { type: "string", description: a.description };
    if (a.required) required.push(a.name);
  }
  return { type: "object", properties, required };
}

function stringArgs(args) {
  const out = {};
  for (const [k, v] of Object.entries(args)) out[k] = typeof v === "string" ? v : JSON.stringify(v);
  return out;
}

// -- app -----------------------------------------------------------------------
function App() {
  const [page, setPage] = useState(location.hash === "#playground" ? "playground" : "overview");
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [needToken, setNeedToken] = useState(false);
  const [wrong, setWrong] = useState(false);
  const [tick, setTick] = useState(0);
  // The playground connects when first opened, then stays (and keeps its session).
  const [opened, setOpened] = useState(page === "playground");
  useEffect(() => { if (page === "playground") setOpened(true); }, [page]);

  useEffect(() => {
    const onHash = () => setPage(location.hash === "#playground" ? "playground" : "overview");
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);

  useEffect(() => {
    let stop = false;
    let timer;
    const poll = async () => {
      try {
        const d = await api("/api/overview");
        if (stop) return;
        setData(d);
        setError(null);
        setNeedToken(false);
      } catch (e) {
        if (stop) return;
        if (e instanceof Unauthorized) {
          setWrong(!!adminToken());
          setNeedToken(true);
          return;
        }
        setError(e.message);
      }
      if (!stop) timer = setTimeout(poll, POLL_MS);
    };
    poll();
    return () => { stop = true; clearTimeout(timer); };
  }, [tick]);

  if (needToken) return html`<${Shell} page=${page} data=${data}><${TokenPrompt} wrong=${wrong} onDone=${() => { setNeedToken(false); setTick(tick + 1); }} /></${Shell}>`;
  return html`<${Shell} page=${page} data=${data} signOut=${adminToken() ? () => { sessionStorage.removeItem(TOKEN_KEY); setTick(tick + 1); } : null}>
    ${page === "overview" ? html`<${Overview} data=${data} error=${error} />` : ""}
    ${data && opened ? html`<div hidden=${page !== "playground"}><${Playground} targets=${data.targets || []} servers=${data.servers || []} /></div>` : ""}
  </${Shell}>`;
}

function Shell({ page, data, signOut, children }) {
  return html`<div class="shell">
    <header class="top">
      <a class="brand" href="#overview"><span class="logo" aria-hidden="true">◆</span> mcpmux</a>
      <nav class="tabs" aria-label="Pages">
        <a href="#overview" class=${page === "overview" ? "active" : ""} aria-current=${page === "overview" ? "page" : null}>Overview</a>
        <a href="#playground" class=${page === "playground" ? "active" : ""} aria-current=${page === "playground" ? "page" : null}>Playground</a>
      </nav>
      <div class="top-right">
        ${data ? html`<span class="muted">v${data.version}</span>` : ""}
        <a href="/metrics" class="muted" target="_blank" rel="noopener">metrics</a>
        ${signOut ? html`<button class="link" onClick=${signOut}>Forget token</button>` : ""}
      </div>
    </header>
    <main>${children}</main>
  </div>`;
}

render(html`<${App} />`, document.getElementById("app"));
