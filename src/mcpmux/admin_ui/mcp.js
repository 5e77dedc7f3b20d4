// A small MCP client for the browser: streamable HTTP (2025-06-18), one POST per
// message. Answers come as JSON or as an SSE stream that may first carry progress,
// log lines and server requests (elicitation), which are handed to the callbacks.

export const PROTOCOL_VERSION = "2025-06-18";

export class McpError extends Error {
  constructor(error) {
    super(error.message || "error");
    this.code = error.code;
    this.data = error.data;
  }
}

export class McpClient {
  /**
   * @param {string} url the MCP endpoint
   * @param {{headers?: object, onNotification?: Function, onRequest?: Function}} opts
   *   onRequest(msg) returns the result of a server request (or throws).
   */
  constructor(url, { headers = {}, onNotification = () => {}, onRequest = null } = {}) {
    this.url = url;
    this.extraHeaders = headers;
    this.onNotification = onNotification;
    this.onRequest = onRequest;
    this.sessionId = null;
    this.protocolVersion = null;
    this.nextId = 1;
    this.progress = new Map();
  }

  headers() {
    const h = { "Content-Type": "application/json", Accept: "application/json, text/event-stream", ...this.extraHeaders };
    if (this.sessionId) h["Mcp-Session-Id"] = this.sessionId;
    if (this.protocolVersion) h["MCP-Protocol-Version"] = this.protocolVersion;
    return h;
  }

  async connect() {
    const res = await this.request("initialize", {
      protocolVersion: PROTOCOL_VERSION,
      capabilities: { elicitation: {}, roots: { listChanged: false } },
      clientInfo: { name: "mcpmux-playground", title: "mcpmux playground", version: "1" },
    });
    this.protocolVersion = res.protocolVersion;
    this.serverInfo = res.serverInfo;
    this.capabilities = res.capabilities || {};
    await this.notify("notifications/initialized");
    return res;
  }

  /** Every page of a list method. */
  async listAll(method, key) {
    const out = [];
    let cursor;
    do {
      const res = await this.request(method, cursor ? { cursor } : {});
      out.push(...(res[key] || []));
      cursor = res.nextCursor;
    } while (cursor);
    return out;
  }

  async request(method, params, { onProgress, signal } = {}) {
    const id = this.nextId++;
    let token = null;
    if (onProgress) {
      token = `playground-${id}`;
      params = { ...(params || {}), _meta: { ...((params && params._meta) || {}), progressToken: token } };
      this.progress.set(token, onProgress);
    }
    const msg = { jsonrpc: "2.0", id, method };
    if (params !== undefined) msg.params = params;
    try {
      const resp = await this.post(msg, id, signal);
      if (resp.error) throw new McpError(resp.error);
      return resp.result;
    } finally {
      if (token) this.progress.delete(token);
    }
  }

  async notify(method, params) {
    const msg = { jsonrpc: "2.0", method };
    if (params !== undefined) msg.params = params;
    await this.post(msg);
  }

  async post(msg, id, signal) {
    const r = await fetch(this.url, { method: "POST", headers: this.headers(), body: JSON.stringify(msg), signal });
    const sid = r.headers.get("mcp-session-id");
    if (sid) this.sessionId = sid;
    const ctype = r.headers.get("content-type") || "";
    if (id === undefined) {
      if (!r.ok) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
      return null;
    }
    if (!r.ok) {
      const text = await r.text();
      let body = null;
      try { body = JSON.parse(text); } catch { /* not JSON */ }
      if (body && body.error) return body;
      throw new Error(`HTTP ${r.status}: ${text.slice(0, 300)}`);
    }
    if (ctype.startsWith("application/json")) return await r.json();
    if (ctype.startsWith("text/event-stream")) return await this.readStream(r.body, id);
    throw new Error(`unexpected answer (${r.status} ${ctype || "no content type"})`);
  }

  async readStream(body, id) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let m;
      while ((m = /\r\n|\n|\r(?=.)/.exec(buf))) {
        const line = buf.slice(0, m.index);
        buf = buf.slice(m.index + m[0].length);
        if (line === "") {
          if (data.length) {
            const msg = JSON.parse(data.join("\n"));
            data = [];
            if ("id" in msg && ("result" in msg || "error" in msg) && !("method" in msg)) {
              if (msg.id === id) {
                reader.cancel().catch(() => {});
                return msg;
              }
            } else {
              this.dispatch(msg);
            }
          }
        } else if (line.startsWith("data:")) {
          data.push(line.slice(5).replace(/^ /, ""));
        }
      }
    }
    throw new Error("the stream ended without an answer");
  }

  /** A notification or a server request that arrived on a call's stream. */
  dispatch(msg) {
    if ("id" in msg && msg.method) {
      this.answer(msg);
      return;
    }
    if (msg.method === "notifications/progress") {
      const cb = this.progress.get(msg.params && msg.params.progressToken);
      if (cb) cb(msg.params);
    }
    this.onNotification(msg);
  }

  async answer(msg) {
    let reply;
    try {
      let result;
      if (msg.method === "roots/list") result = { roots: [] };
      else if (msg.method === "ping") result = {};
      else if (this.onRequest) result = await this.onRequest(msg);
      else throw new Error(`${msg.method} is not supported by this client`);
      reply = { jsonrpc: "2.0", id: msg.id, result };
    } catch (e) {
      reply = { jsonrpc: "2.0", id: msg.id, error: { code: -32603, message: String(e.message || e) } };
    }
    await this.post(reply).catch((e) => this.onNotification({ method: "playground/error", params: { message: e.message } }));
  }

  async close() {
    if (!this.sessionId) return;
    const h = this.headers();
    delete h["Content-Type"];
    await fetch(this.url, { method: "DELETE", headers: h }).catch(() => {});
    this.sessionId = null;
  }
}
