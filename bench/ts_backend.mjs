// A tiny MCP server on the official TypeScript SDK (tests/peers), answering POSTs with
// SSE (enableJsonResponse: false), one transport per session, node:http only.
// It is the "real SDK, SSE answers" backend of bench/run.py scenario 1.
//
//   tests/peers/node_modules/node/bin/node bench/ts_backend.mjs PORT
//   -> prints "LISTENING PORT" once serving; POST/GET/DELETE /mcp
import { createServer } from "node:http";
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const peers = join(here, "..", "tests", "peers", "package.json");
const req = createRequire(peers);
const load = async (spec) => import(pathToFileURL(req.resolve(spec)).href);
const { McpServer } = await load("@modelcontextprotocol/sdk/server/mcp.js");
const { StreamableHTTPServerTransport } = await load("@modelcontextprotocol/sdk/server/streamableHttp.js");
const { isInitializeRequest } = await load("@modelcontextprotocol/sdk/types.js");
const { z } = await load("zod");

const port = Number(process.argv[2] || 0);
const transports = new Map();

function newServer() {
  const server = new McpServer({ name: "ts-bench", version: "1.0.0" });
  server.tool("echo", "Echoes back the input message.", { message: z.string() },
    async ({ message }) => ({ content: [{ type: "text", text: `Echo: ${message}` }] }));
  return server;
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : undefined;
}

const http = createServer(async (req, res) => {
  try {
    if (!req.url.startsWith("/mcp")) { res.writeHead(404).end(); return; }
    const sid = req.headers["mcp-session-id"];
    if (req.method === "POST") {
      const body = await readBody(req);
      let t = sid ? transports.get(sid) : undefined;
      if (!t && !sid && isInitializeRequest(body)) {
        t = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          enableJsonResponse: false,
          onsessioninitialized: (id) => transports.set(id, t),
        });
        t.onclose = () => { if (t.sessionId) transports.delete(t.sessionId); };
        await newServer().connect(t);
      }
      if (!t) { res.writeHead(sid ? 404 : 400, { "content-type": "application/json" })
        .end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32000, message: "No valid session ID" } })); return; }
      await t.handleRequest(req, res, body);
      return;
    }
    const t = sid ? transports.get(sid) : undefined;
    if (!t) { res.writeHead(404).end(); return; }
    await t.handleRequest(req, res);
  } catch (e) {
    if (!res.headersSent) res.writeHead(500).end(String(e));
  }
});
http.keepAliveTimeout = 5000;  // Node's default, stated: idle keep-alive sockets close after 5 s
http.listen(port, "127.0.0.1", () => console.log(`LISTENING ${http.address().port}`));
