"""A/B of gateway variants (source trees and flags), 2025 sessions or 2026 requests.

    .venv/bin/python bench/ab.py --variant /tmp/before/src --variant src [--mode json|sse|2026]
    .venv/bin/python bench/ab.py --variant "src:" --variant "src:--no-access-log --no-metrics"
    .venv/bin/python bench/ab.py --variant src --variant build/native --target stdio

Each ``--variant`` is ``SRC[:FLAGS]``: a ``src/`` directory put on PYTHONPATH and the
extra ``mcpmux run`` flags. All variants run at once in front of one minimal backend
(``bench/backend.py``); wrk (``bench/call.lua``) alternates between them in every
round, so all see the same machine noise. ``--mode`` picks the client: a 2025-06-18
session (JSON answers), a 2025-11-25 session (SSE answers) or 2026-07-28 requests
(no session; ``_meta`` envelope and ``Mcp-Method``/``Mcp-Name`` headers). ``--target
stdio`` puts server-everything over stdio behind each gateway instead (scenario 4's
target; each gateway starts its own process). Prints, per
concurrency, each variant's median CPU µs per call (from ``/proc``) and the share of
it spent in the kernel (system calls, loopback TCP), its ratio to the
first variant (of the medians, and the median of the rounds' own ratios, steadier
on a busy machine) and every round. ``bench/compare.py`` does the same for two trees with
the full harness (nginx, direct path, load accounting), 2025 sessions only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from mcp_client import JSON_VERSION, SSE_VERSION, open_session  # noqa: E402

MODERN = "2026-07-28"
PEERS = BENCH.parent / "tests" / "peers" / "node_modules"
EVERYTHING_STDIO = {"command": str(PEERS / "node" / "bin" / "node"),
                    "args": [str(PEERS / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"), "stdio"]}
CALL = {"name": "echo", "arguments": {"message": "hello"}}


def cpu_split(pid: int) -> tuple[float, float]:
    """User and kernel CPU seconds a process used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    return sum(cpu_split(pid))


def round_args(parser: argparse.ArgumentParser, rounds: int) -> None:
    """--rounds, --duration and --conc, as ab.py and floor.py take them."""
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--conc", type=int, action="append", help="concurrency (repeatable; default 16 and 1)")


def body(mode: str) -> dict[str, object]:
    params: dict[str, object] = dict(CALL)
    if mode == "2026":
        params["_meta"] = {"io.modelcontextprotocol/protocolVersion": MODERN,
                           "io.modelcontextprotocol/clientCapabilities": {},
                           "io.modelcontextprotocol/clientInfo": {"name": "bench-ab", "version": "1"}}
    return {"jsonrpc": "2.0", "id": 0, "method": "tools/call", "params": params}


async def wrk_args(gateways: list[str], mode: str, body_file: Path) -> list[list[str]]:
    """call.lua's arguments per gateway: a fresh session each, or none for 2026."""
    if mode == "2026":
        return [[gw, "--", "-", MODERN, str(body_file), "", "tools/call", str(CALL["name"])] for gw in gateways]
    out = []
    async with aiohttp.ClientSession() as http:
        for gw in gateways:
            s = await open_session(http, gw, SSE_VERSION if mode == "sse" else JSON_VERSION)
            out.append([gw, "--", s.sid, s.version, str(body_file), ""])
    return out


def run(args: argparse.Namespace, work: Path) -> None:
    py = sys.executable
    body_file = work / "body.json"
    body_file.write_text(json.dumps(body(args.mode), separators=(",", ":")))
    # --pin: the gateways on the second core, backend and wrk on the first, so a gateway
    # never shares a core (and its caches) with the processes it waits for.
    gw_cpu, rest_cpu = (["taskset", "-c", "1"], ["taskset", "-c", "0"]) if args.pin else ([], [])
    backend = subprocess.Popen([*rest_cpu, py, str(BENCH / "backend.py"), "--ports", "1"], stdout=subprocess.PIPE)
    procs = [backend]
    try:
        assert backend.stdout is not None
        url = f"http://127.0.0.1:{int(backend.stdout.readline().split()[1])}/mcp"
        gateways = []
        target = {"name": "b", "stdio": EVERYTHING_STDIO} if args.target == "stdio" else {"name": "b", "http": {"url": url}}
        for i, spec in enumerate(args.variant):
            src, _, flags = spec.partition(":")
            cfg, ready = work / f"gw{i}.json", work / f"ready{i}.json"
            cfg.write_text(json.dumps({"listen": {"host": "127.0.0.1", "port": 0}, "admin": {"enabled": False},
                                       "targets": [target]}))
            proc = subprocess.Popen([*gw_cpu, py, "-m", "mcpmux", "run", "-c", str(cfg), "--ready-file", str(ready),
                                     *flags.split()], env={**os.environ, "PYTHONPATH": str(Path(src).resolve())},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(proc)
            while not ready.exists():
                if proc.poll() is not None:
                    raise SystemExit(f"variant {spec!r} exited with {proc.returncode}")
                time.sleep(0.05)
            time.sleep(0.3)  # let it finish connecting its target
            gateways.append(json.loads(ready.read_text())["mcp"])
        argvs = asyncio.run(wrk_args(gateways, args.mode, body_file))
        for argv in argvs:  # warm-up, not measured: a stdio target starts at its first call
            subprocess.run(["wrk", "-t1", "-c4", "-d1s", "-s", str(BENCH / "call.lua"), *argv], capture_output=True)
        for conc in args.conc:
            cpu: dict[str, list[float]] = {spec: [] for spec in args.variant}
            kernel: dict[str, list[float]] = {spec: [] for spec in args.variant}
            for _ in range(args.rounds):
                for spec, proc, argv in zip(args.variant, procs[1:], argvs, strict=True):
                    u0, k0 = cpu_split(proc.pid)
                    out = subprocess.run([*rest_cpu, "wrk", "-t1", f"-c{conc}", f"-d{args.duration}s", "-s",
                                          str(BENCH / "call.lua"), *argv], capture_output=True, text=True)
                    u1, k1 = cpu_split(proc.pid)
                    found = re.search(r'"requests":(\d+)', out.stdout)
                    if not found or not int(found.group(1)):
                        raise SystemExit(f"wrk got no answers from {spec!r}:\n{out.stdout}{out.stderr}")
                    used = (u1 - u0) + (k1 - k0)
                    cpu[spec].append(used / int(found.group(1)) * 1e6)
                    kernel[spec].append((k1 - k0) / used if used else 0.0)
            base = statistics.median(cpu[args.variant[0]])
            for spec, rounds in cpu.items():
                med = statistics.median(rounds)
                # Rounds run back to back, so a round's ratio shares its noise: their median
                # is steadier than the ratio of the medians when the machine is busy.
                paired = statistics.median(r / b for r, b in zip(rounds, cpu[args.variant[0]], strict=True))
                print(f"{args.mode} c={conc} {spec}: {med:.0f} µs/call (x{med / base:.3f}; "
                      f"paired x{paired:.3f}), "
                      f"{statistics.median(kernel[spec]):.0%} in the kernel; "
                      f"rounds {[round(r) for r in rounds]}", flush=True)
    finally:
        stop(procs)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Gateways first, then the backend (whose GET streams they hold open); a process
    that does not stop within 10 s is killed, so a run never hangs on its clean-up."""
    for p in reversed(procs):
        p.terminate()
    for p in reversed(procs):
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", required=True, help="SRC[:FLAGS]; the first is the baseline")
    parser.add_argument("--mode", choices=["json", "sse", "2026"], default="json")
    parser.add_argument("--target", choices=["http", "stdio"], default="http",
                        help="the minimal HTTP backend, or server-everything over stdio")
    parser.add_argument("--pin", action="store_true",
                        help="gateways on CPU 1, backend and wrk on CPU 0 (needs taskset and 2 cores)")
    round_args(parser, rounds=7)
    args = parser.parse_args()
    args.conc = args.conc or [16, 1]
    with tempfile.TemporaryDirectory(prefix="mcpmux-ab-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
