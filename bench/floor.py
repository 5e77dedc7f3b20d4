"""The floor of the gateway's stack: a bare forwarder on the same listener and client.

    .venv/bin/python bench/floor.py [--rounds 5] [--conc 16 --conc 1]

Starts the minimal backend and two forwarders in front of it: one on mcpmux's
HTTP/1.1 protocol (``listener/h1.py``), one on uvicorn's httptools protocol. Both
forward through ``upstream/h1.py``: parse the POSTed JSON-RPC once, rewrite the id,
forward, parse the answer, restore the id, answer. No sessions, policy, routing,
streams, metrics or access log: what is left when mcpmux's own request path is
taken away. wrk alternates between the two; prints median CPU µs per call.

``--serve URL PORT [uvicorn]`` runs one forwarder (what the driver starts).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from ab import cpu_split, round_args, stop  # noqa: E402

VERSION = "2025-06-18"
_JSON = (b"content-type", b"application/json")


async def serve(upstream: str, port: int, protocol: str) -> None:
    import uvicorn

    from mcpmux.listener.h1 import protocol_class
    from mcpmux.upstream import h1

    pool = h1.Pool(upstream)
    base = h1.encode_headers({"Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "floor", "version": "1"}}}
    resp = await pool.request(pool.request_head("POST", base), orjson.dumps(init))
    await resp.read(1 << 20)
    sid = resp.headers["mcp-session-id"]
    resp.release()
    head = pool.request_head("POST", base + h1.encode_headers({"Mcp-Session-Id": sid, "MCP-Protocol-Version": VERSION}))
    resp = await pool.request(head, orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    await resp.read(1 << 20)
    resp.release()
    ids = itertools.count(1)

    async def reply(send: Any, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [_JSON, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        msg = orjson.loads((await receive())["body"])
        rid = msg["id"]
        msg["id"] = next(ids)
        answer = await pool.request(head, orjson.dumps(msg))
        raw = await answer.read(1 << 24)
        answer.release()
        out = orjson.loads(raw)
        out["id"] = rid
        await reply(send, 200, orjson.dumps(out))

    http: Any = "httptools" if protocol == "uvicorn" else protocol_class(65536, 10.0, 1000)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", loop="none", log_level="warning",
                            http=http, proxy_headers=False, server_header=False, date_header=False,
                            access_log=False)
    await uvicorn.Server(config).serve()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drive(args: argparse.Namespace) -> None:
    py = sys.executable
    backend = subprocess.Popen([py, str(BENCH / "backend.py"), "--ports", "1"], stdout=subprocess.PIPE)
    procs = [backend]
    try:
        assert backend.stdout is not None
        url = f"http://127.0.0.1:{int(backend.stdout.readline().split()[1])}/mcp"
        forwarders = {}
        for name in ("mcpmux h1", "uvicorn"):
            port = free_port()
            proc = subprocess.Popen([py, __file__, "--serve", url, str(port), *(["uvicorn"] if name == "uvicorn" else [])])
            procs.append(proc)
            forwarders[name] = (proc, f"http://127.0.0.1:{port}/mcp")
        with tempfile.NamedTemporaryFile("w", suffix=".json") as body:
            body.write(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "tools/call",
                                   "params": {"name": "echo", "arguments": {"message": "hello"}}},
                                  separators=(",", ":")))
            body.flush()

            def wrk(target: str, conc: int, seconds: int) -> int:
                out = subprocess.run(["wrk", "-t1", f"-c{conc}", f"-d{seconds}s", "-s", str(BENCH / "call.lua"),
                                      target, "--", "x", VERSION, body.name, ""], capture_output=True, text=True)
                found = re.search(r'"requests":(\d+)', out.stdout)
                return int(found.group(1)) if found else 0

            deadline = time.monotonic() + 30
            for _, target in forwarders.values():  # up and answering (also the warm-up)
                while not wrk(target, 1, 1):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"forwarder at {target} does not answer")
            for conc in args.conc:
                cpu: dict[str, list[float]] = {name: [] for name in forwarders}
                kernel: dict[str, list[float]] = {name: [] for name in forwarders}
                for _ in range(args.rounds):
                    for name, (proc, target) in forwarders.items():
                        u0, k0 = cpu_split(proc.pid)
                        n = wrk(target, conc, args.duration)
                        u1, k1 = cpu_split(proc.pid)
                        used = (u1 - u0) + (k1 - k0)
                        cpu[name].append(used / max(n, 1) * 1e6)
                        kernel[name].append((k1 - k0) / used if used else 0.0)
                for name, rounds in cpu.items():
                    print(f"floor c={conc} {name}: {statistics.median(rounds):.0f} µs/call, "
                          f"{statistics.median(kernel[name]):.0%} in the kernel; "
                          f"rounds {[round(r) for r in rounds]}", flush=True)
    finally:
        stop(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", nargs="+", metavar="ARG", help=argparse.SUPPRESS)
    round_args(parser, rounds=5)
    args = parser.parse_args()
    if args.serve:
        import uvloop

        url, port, *rest = args.serve
        uvloop.run(serve(url, int(port), rest[0] if rest else "mcpmux"))
        return
    args.conc = args.conc or [16, 1]
    drive(args)


if __name__ == "__main__":
    main()
