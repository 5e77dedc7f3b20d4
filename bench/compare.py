"""A/B two source trees of mcpmux in the same run: CPU per call and latency.

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/compare.py --before /tmp/before/src --after src [--rounds 5]

Both gateways run at once in front of the same minimal backend (JSON sessions, then
SSE sessions) and wrk alternates between direct, before and after in every round, so
both see the same machine noise. Prints one table: medians over rounds of calls/s,
p50, and the gateway's CPU µs per call, and the after/before ratio of CPU per call (medians come from the harness).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench
from mcp_client import JSON_VERSION, SSE_VERSION, close_session, open_session


class TreeHarness(bench.Harness):
    """Starts the gateway from the source tree in ``self.src`` (PYTHONPATH)."""

    src: str = ""

    def spawn_gateway(self, cfg: Path, ready_file: Path | None = None, args: Sequence[str] = (),
                      env: dict[str, str] | None = None, name: str = "gateway") -> subprocess.Popen[bytes]:
        return super().spawn_gateway(cfg, ready_file, args, {**(env or {}), "PYTHONPATH": self.src},
                                     f"gateway-{Path(self.src).parent.name}")


async def amain(args: argparse.Namespace) -> int:
    st = bench.Settings(quick=False, rounds=args.rounds, duration=args.duration, warmup=2)
    with tempfile.TemporaryDirectory(prefix="mcpmux-compare-") as tmp:
        h = TreeHarness(st, Path(tmp))
        async with aiohttp.ClientSession() as http:
            h.http = http
            try:
                backend = await h.backend(name="backend-compare")
                gws = {}
                for label, src in (("before", args.before_src), ("after", args.after_src)):
                    h.src = src
                    gws[label] = await h.gateway([{"name": "b", "http": {"url": backend.url}}])
                call = {"method": "tools/call", "params": bench.CALL_BODY}
                res = bench.Results()
                for version in (JSON_VERSION, SSE_VERSION):
                    paths = [bench.Path_("direct", await open_session(http, backend.url, version))]
                    for label, gw in gws.items():
                        paths.append(bench.Path_(label, await open_session(http, gw.url, version), gw.pid))
                    await bench.ab(h, res, "ab", version, paths, call, tuple(args.concurrency), bench.echo_check)
                    for p in paths:
                        await close_session(http, p.session)
            finally:
                h.procs.stop_all()
    print("| session | c | via | calls/s | p50 ms | CPU µs/call | after/before CPU |")
    print("|---|--:|---|--:|--:|--:|--:|")
    for row in res.rows:
        ratio = ""
        if row.via == "after":
            before = next(r for r in res.rows if r.case == row.case and r.conc == row.conc and r.via == "before")
            if row.hop_cpu_us and before.hop_cpu_us:
                ratio = f"{row.hop_cpu_us / before.hop_cpu_us:.3f}"
        cpu = f"{row.hop_cpu_us:.0f}" if row.hop_cpu_us else "-"
        print(f"| {row.case} | {row.conc} | {row.via} | {row.calls_per_s:,.0f} | {row.p50_ms:.2f} | {cpu} | {ratio} |")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the src/ directory of the baseline tree")
    parser.add_argument("--after", default="src", help="the src/ directory of the tree under test")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=3, help="seconds per timed run")
    parser.add_argument("--concurrency", type=int, action="append", default=None)
    args = parser.parse_args()
    args.concurrency = args.concurrency or [1, 16]
    args.before_src, args.after_src = str(Path(args.before).resolve()), str(Path(args.after).resolve())
    return asyncio.run(amain(args))


if __name__ == "__main__":
    raise SystemExit(main())
