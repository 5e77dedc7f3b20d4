"""What metrics, the access log and tracing cost per call.

    .venv/bin/python bench/observability.py [--rounds 5] [--duration 3] [--concurrency 16]

Three gateways of this tree run at once in front of the same minimal backend (JSON
sessions), and wrk alternates between direct and each gateway in every round, so all
see the same machine noise (the harness of ``run.py``):

* ``off``: ``--no-metrics --no-access-log``, no OTEL variables (no per-request hook);
* ``metrics+log``: the defaults (request metrics, one access line per call, written
  to the gateway's log file);
* ``tracing``: the defaults plus ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a
  stand-in collector in this process that accepts and discards the spans.

Prints medians over rounds of calls/s, p50 and the gateway's CPU µs per call, and the
ratio of each case's CPU per call to ``off`` (goal: metrics+log <= 1.05).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench
from mcp_client import JSON_VERSION, close_session, open_session

CASES = {
    "off": (["--no-metrics", "--no-access-log"], {}),
    "metrics+log": ([], {}),
    "tracing": ([], {"OTEL_EXPORTER_OTLP_ENDPOINT": "COLLECTOR"}),
}


class VariantHarness(bench.Harness):
    """Starts each gateway with the flags and environment of one case."""

    args: list[str] = []
    env: dict[str, str] = {}
    name = "gateway"

    def spawn_gateway(self, cfg: Path, ready_file: Path | None = None) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "mcpmux", "run", "-c", str(cfg), "--log-level", "info", *self.args]
        if ready_file is not None:
            argv += ["--ready-file", str(ready_file)]
        return self.procs.spawn(argv, self.name, env={"PYTHONUNBUFFERED": "1", **self.env})


async def collector() -> tuple[web.AppRunner, str]:
    """An OTLP/HTTP endpoint that says yes to everything."""
    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = bench.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def amain(args: argparse.Namespace) -> int:
    st = bench.Settings(quick=False, rounds=args.rounds, duration=args.duration, warmup=2)
    runner, otlp = await collector()
    with tempfile.TemporaryDirectory(prefix="mcpmux-observability-") as tmp:
        h = VariantHarness(st, Path(tmp))
        async with aiohttp.ClientSession() as http:
            h.http = http
            try:
                backend = await h.backend(name="backend-observability")
                gws = {}
                for label, (argv, env) in CASES.items():
                    h.args = argv
                    h.env = {k: (otlp if v == "COLLECTOR" else v) for k, v in env.items()}
                    h.name = f"gateway-{label.replace('+', '-')}"
                    gws[label] = await h.gateway([{"name": "b", "http": {"url": backend.url}}])
                call = {"method": "tools/call", "params": bench.CALL_BODY}
                res = bench.Results()
                paths = [bench.Path_("direct", await open_session(http, backend.url, JSON_VERSION))]
                for label, gw in gws.items():
                    paths.append(bench.Path_(label, await open_session(http, gw.url, JSON_VERSION), gw.pid))
                await bench.ab(h, res, "obs", JSON_VERSION, paths, call, tuple(args.concurrency), bench.echo_check)
                for p in paths:
                    await close_session(http, p.session)
            finally:
                h.procs.stop_all()
                await runner.cleanup()
    print("| c | via | calls/s | p50 ms | CPU µs/call | CPU vs off |")
    print("|--:|---|--:|--:|--:|--:|")
    for row in res.rows:
        off = next(r for r in res.rows if r.conc == row.conc and r.via == "off")
        ratio = ""
        if row.via not in ("direct", "off") and row.hop_cpu_us and off.hop_cpu_us:
            ratio = f"{row.hop_cpu_us / off.hop_cpu_us:.3f}"
        cpu = f"{row.hop_cpu_us:.0f}" if row.hop_cpu_us else "-"
        print(f"| {row.conc} | {row.via} | {row.calls_per_s:,.0f} | {row.p50_ms:.2f} | {cpu} | {ratio} |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=3, help="seconds per timed run")
    parser.add_argument("--concurrency", type=int, action="append", default=None)
    args = parser.parse_args()
    args.concurrency = args.concurrency or [16]
    return asyncio.run(amain(args))


if __name__ == "__main__":
    raise SystemExit(main())
