"""Misbehaving MCP peers, for failure-isolation tests.

Each one fails in a way real deployments do, so a test can stand it beside a
healthy target and check that only it is reported broken:

* :func:`refusing_url`: a loopback port nobody listens on (connection refused);
* :class:`HangingServer`: accepts TCP connections and never answers a byte;
* :class:`GarbageServer`: answers every HTTP request with garbage (an HTML 500,
  text/plain, invalid JSON under ``application/json``, or bytes that are not HTTP);
* stdio commands, run as ``python tests/peers/bad_servers.py MODE``:

  - ``exit-at-start``: writes a line to stderr and exits with code 3 before reading;
  - ``garbage-stdio``: writes non-JSON lines to stdout and never answers;
  - ``crashy``: a tiny, correct MCP server whose ``crash`` tool kills the process
    mid-call (exit code 7), whose ``close_stdout`` tool closes stdout and then
    sleeps forever, whose ``hang`` tool never answers, and whose ``pid`` tool says
    which process answered (so a test can see a restart);
  - ``flappy``: ``crashy`` that exits right after its tools are listed (a crash loop);
  - ``late-http --port N``: a real streamable-HTTP server built with the official
    SDK (``MCPServer``) on a fixed port, for "the server appears later" tests.

The in-process servers run on daemon threads: the gateway under test is a separate
process, so they never share an event loop with it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import orjson

HERE = Path(__file__).resolve()

GarbageMode = Literal["html-500", "text-200", "bad-json", "not-http"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refusing_url(path: str = "/mcp") -> str:
    """A URL whose port was free a moment ago: connecting to it is refused."""
    return f"http://127.0.0.1:{free_port()}{path}"


def stdio_target(name: str, mode: str, *args: str, timeout: float = 2.0) -> dict[str, Any]:
    """Config of a stdio target running one of this module's command-line modes."""
    return {
        "name": name,
        "stdio": {"command": sys.executable, "args": [str(HERE), mode, *args]},
        "timeout": timeout,
    }


class _ThreadServer:
    """Start/stop plumbing shared by the socket servers below."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def __enter__(self) -> _ThreadServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.close()
        self._thread.join(5)

    def _accept_loop(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.conns.append(conn)
            self.on_connection(conn)

    def on_connection(self, conn: socket.socket) -> None:
        raise NotImplementedError


class HangingServer(_ThreadServer):
    """Accepts every connection, reads nothing, answers nothing, closes nothing."""

    def on_connection(self, conn: socket.socket) -> None:
        pass

    @property
    def accepted(self) -> int:
        return len(self.conns)


class GarbageServer:
    """An HTTP server (or a non-HTTP one) that answers every request with garbage."""

    def __init__(self, mode: GarbageMode) -> None:
        self.mode = mode
        self._raw: _RawGarbage | None = None
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        port = self._raw.port if self._raw else self._http.server_address[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}/mcp"

    def __enter__(self) -> GarbageServer:
        if self.mode == "not-http":
            self._raw = _RawGarbage().__enter__()  # type: ignore[assignment]
            return self
        mode = self.mode

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                if mode == "html-500":
                    status, ctype = 500, "text/html"
                    body = b"<html><body><h1>500 Internal Server Error</h1></body></html>"
                elif mode == "text-200":
                    status, ctype, body = 200, "text/plain", b"hello, I am not an MCP server\n"
                else:  # bad-json
                    status, ctype, body = 200, "application/json", b"{this is not json"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._raw is not None:
            self._raw.__exit__(*exc)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()


class _RawGarbage(_ThreadServer):
    """Writes bytes that are not HTTP at all, then closes the connection."""

    def on_connection(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(1)
            with contextlib.suppress(OSError):
                conn.recv(65536)
            conn.sendall(b"\x00\x01garbage that is not HTTP\r\n\r\n")
            conn.close()


@contextlib.contextmanager
def late_http_server(port: int) -> Iterator[str]:
    """Start the SDK-built ``late-http`` server on ``port``; yields its URL once it listens."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE), "late-http", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()  # the server prints or exits (EOF)
        if not line.startswith("LISTENING"):
            raise AssertionError(f"late-http server did not start: {line!r}")
        yield line.split()[1]
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ----------------------------------------------------------------- stdio modes

CRASHY_TOOLS = [
    {
        "name": "echo",
        "description": "Echo 'text'.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
    {"name": "pid", "description": "The answering process id.", "inputSchema": {"type": "object"}},
    {
        "name": "crash",
        "description": "Kill the server mid-call.",
        "inputSchema": {"type": "object"},
    },
    {"name": "hang", "description": "Never answer.", "inputSchema": {"type": "object"}},
    {
        "name": "flood",
        "description": "Send 'count' progress notifications of 64 KiB each, then answer.",
        "inputSchema": {"type": "object", "properties": {"count": {"type": "integer"}}},
    },
    {
        "name": "close_stdout",
        "description": "Close stdout mid-call, keep running.",
        "inputSchema": {"type": "object"},
    },
]


def _write(msg: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps({"jsonrpc": "2.0", **msg}) + b"\n")
    sys.stdout.buffer.flush()


def _text(text: str, structured: dict[str, Any] | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": False}
    if structured is not None:
        res["structuredContent"] = structured
    return res


def crashy(flappy: bool = False) -> None:
    """Newline-delimited JSON-RPC on stdio, answered in order; no SDK, starts instantly.

    ``flappy``: exit (code 5) right after answering ``tools/list``, so the target comes
    up, is listed, and dies again at once: a crash loop.
    """
    for raw in sys.stdin.buffer:
        if not raw.strip():
            continue
        msg = orjson.loads(raw)
        method, rid, params = msg.get("method"), msg.get("id"), msg.get("params") or {}
        if rid is None or method is None:
            continue  # notifications and responses: nothing to do
        if method == "initialize":
            version = params.get("protocolVersion") or "2025-06-18"
            _write(
                {
                    "id": rid,
                    "result": {
                        "protocolVersion": version,
                        "capabilities": {"tools": {"listChanged": False}},
                        "serverInfo": {"name": "bad-servers-crashy", "version": "0"},
                    },
                }
            )
        elif method == "ping":
            _write({"id": rid, "result": {}})
        elif method == "tools/list":
            _write({"id": rid, "result": {"tools": CRASHY_TOOLS}})
            if flappy:
                os._exit(5)
        elif method == "tools/call":
            name, args = params.get("name"), params.get("arguments") or {}
            if name == "echo":
                _write({"id": rid, "result": _text(str(args.get("text", "")))})
            elif name == "pid":
                _write({"id": rid, "result": _text(str(os.getpid()), {"pid": os.getpid()})})
            elif name == "crash":
                sys.stderr.write("crashy: crashing mid-call on purpose\n")
                sys.stderr.flush()
                os._exit(7)
            elif name == "hang":
                pass  # never answered
            elif name == "flood":
                token = (params.get("_meta") or {}).get("progressToken")
                count = int(args.get("count", 100))
                for i in range(count):
                    if token is not None:
                        note = {"progressToken": token, "progress": i, "message": "x" * 65536}
                        _write({"method": "notifications/progress", "params": note})
                _write({"id": rid, "result": _text(f"flooded {count}")})
            elif name == "close_stdout":
                # The protocol channel dies but the process lives on (a wedged server).
                sys.stderr.write("crashy: closing stdout and hanging on purpose\n")
                sys.stderr.flush()
                os.close(1)
                while True:
                    time.sleep(3600)
            else:
                _write({"id": rid, "error": {"code": -32602, "message": f"unknown tool: {name}"}})
        else:
            _write({"id": rid, "error": {"code": -32601, "message": f"method not found: {method}"}})


def late_http(port: int) -> None:
    import asyncio

    import uvicorn
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("bad-servers-late")

    @server.tool()
    def greet(name: str) -> str:
        """Say hello."""
        return f"hello, {name}"

    app = server.streamable_http_app()

    async def serve() -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
        task = asyncio.create_task(uv.serve(sockets=[sock]))
        while not uv.started:
            if task.done():
                await task
                return
            await asyncio.sleep(0.01)
        print(f"LISTENING http://127.0.0.1:{port}/mcp", flush=True)
        await task

    asyncio.run(serve())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="misbehaving MCP peers")
    parser.add_argument("mode", choices=["exit-at-start", "garbage-stdio", "crashy", "flappy", "late-http"])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.mode == "exit-at-start":
        sys.stderr.write("bad_servers: exiting at start on purpose\n")
        sys.exit(3)
    elif args.mode == "garbage-stdio":
        for _ in sys.stdin.buffer:
            sys.stdout.write("this is not JSON-RPC\n")
            sys.stdout.flush()
    elif args.mode in ("crashy", "flappy"):
        crashy(flappy=args.mode == "flappy")
    else:
        late_http(args.port)


if __name__ == "__main__":
    main()
