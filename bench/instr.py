"""A/B of gateway variants by user-space instructions per call, counted by callgrind.

    .venv/bin/python bench/instr.py --variant /tmp/before/src --variant src [--mode json|sse|2026]

CPU time per call moves with the host (docs/benchmarks.md saw the same commit cost
50 and 113 µs on two days); instructions executed do not. Each ``--variant``
(``SRC[:FLAGS]``, as in ``bench/ab.py``) runs under ``valgrind --tool=callgrind``
with instrumentation off until it is warm, in front of the minimal backend. A round
zeroes the counters, drives the gateway with wrk for ``--duration`` seconds and
dumps: instructions per call is the dump's total over the calls wrk completed.
Rounds of one commit agree within about 0.5 %, so a change of 1 % shows, where a
CPU-time A/B on a shared 2-core machine needs 5 %.

What it does not count: the kernel (system calls, loopback TCP: about a quarter of
the gateway's CPU per call, and the same for every variant that makes the same
calls) and time spent waiting. Under valgrind a gateway runs some 50 times slower,
so a round of 10 s is about a thousand calls.
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

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from ab import body, stop, wrk_args  # noqa: E402


def control(pid: int, *command: str) -> None:
    """Send callgrind a command and wait until it has been carried out."""
    out = subprocess.run(["callgrind_control", *command, str(pid)], capture_output=True, text=True, timeout=120)
    if out.returncode:
        raise SystemExit(f"callgrind_control {' '.join(command)} failed: {out.stdout}{out.stderr}")


def dumped(prefix: Path) -> int:
    """Instructions in the newest dump (``prefix.1``, ``prefix.2``, ...)."""
    newest = max(prefix.parent.glob(prefix.name + ".*"), key=lambda p: int(p.suffix[1:]))
    found = re.search(r"^summary: (\d+)$", newest.read_text(), re.MULTILINE)
    if not found:
        raise SystemExit(f"no summary line in {newest}")
    return int(found.group(1))


def wrk(argv: list[str], conc: int, seconds: int) -> int:
    out = subprocess.run(["wrk", "-t1", f"-c{conc}", f"-d{seconds}s", "-s", str(BENCH / "call.lua"), *argv],
                         capture_output=True, text=True)
    found = re.search(r"^BENCHJSON (.*)$", out.stdout, re.MULTILINE)
    report = json.loads(found.group(1)) if found else {}
    if not report.get("requests") or any(report["errors"].values()):
        raise SystemExit(f"wrk got no answers, or errors (a non-2xx status counts):\n{out.stdout}{out.stderr}")
    return int(report["requests"])


def run(args: argparse.Namespace, work: Path) -> None:
    py = sys.executable
    body_file = work / "body.json"
    body_file.write_text(json.dumps(body(args.mode), separators=(",", ":")))
    backend = subprocess.Popen([py, str(BENCH / "backend.py"), "--ports", "1"], stdout=subprocess.PIPE)
    procs = [backend]
    try:
        assert backend.stdout is not None
        url = f"http://127.0.0.1:{int(backend.stdout.readline().split()[1])}/mcp"
        gateways, prefixes = [], []
        for i, spec in enumerate(args.variant):
            src, _, flags = spec.partition(":")
            cfg, ready, prefix = work / f"gw{i}.json", work / f"ready{i}.json", work / f"cg{i}.out"
            cfg.write_text(json.dumps({"listen": {"host": "127.0.0.1", "port": 0}, "admin": {"enabled": False},
                                       "targets": [{"name": "b", "http": {"url": url}}]}))
            proc = subprocess.Popen(
                ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={prefix}",
                 py, "-m", "mcpmux", "run", "-c", str(cfg), "--ready-file", str(ready), *flags.split()],
                env={**os.environ, "PYTHONPATH": str(Path(src).resolve())},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(proc)
            deadline = time.monotonic() + 300
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"variant {spec!r} did not start under valgrind")
                time.sleep(0.2)
            time.sleep(3)  # let it finish connecting its target
            gateways.append(json.loads(ready.read_text())["mcp"])
            prefixes.append(prefix)
        argvs = asyncio.run(wrk_args(gateways, args.mode, body_file))
        for proc, argv in zip(procs[1:], argvs, strict=True):
            control(proc.pid, "-i", "on")
            wrk(argv, 4, 3)  # warm: code paths translated, pools filled, caches built
        per_call: dict[str, list[float]] = {spec: [] for spec in args.variant}
        for _ in range(args.rounds):
            for spec, proc, argv, prefix in zip(args.variant, procs[1:], argvs, prefixes, strict=True):
                control(proc.pid, "-z")
                calls = wrk(argv, args.conc, args.duration)
                control(proc.pid, "-d")
                per_call[spec].append(dumped(prefix) / calls)
        if args.keep:  # the dumps, for callgrind_annotate --inclusive=yes
            args.keep.mkdir(parents=True, exist_ok=True)
            for i, prefix in enumerate(prefixes):
                newest = max(prefix.parent.glob(prefix.name + ".*"), key=lambda p: int(p.suffix[1:]))
                (args.keep / f"variant{i}.callgrind").write_bytes(newest.read_bytes())
        base = statistics.median(per_call[args.variant[0]])
        for spec, rounds in per_call.items():
            med = statistics.median(rounds)
            print(f"{args.mode} c={args.conc} {spec}: {med / 1000:.1f} k instructions/call (x{med / base:.3f}); "
                  f"rounds {[round(r / 1000, 1) for r in rounds]}", flush=True)
    finally:
        stop(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", required=True, help="SRC[:FLAGS]; the first is the baseline")
    parser.add_argument("--mode", choices=["json", "sse", "2026"], default="json")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per round (about 100 calls/s)")
    parser.add_argument("--conc", type=int, default=16)
    parser.add_argument("--keep", type=Path, help="copy each variant's last dump here (variantN.callgrind)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mcpmux-instr-") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
