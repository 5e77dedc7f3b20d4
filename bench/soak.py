"""mcpmux soak run: mixed load for a long time, then a verdict on leaks and failures.

    .venv/bin/python bench/soak.py                  # 30 minutes (the default)
    .venv/bin/python bench/soak.py --minutes 1      # a quick check
    .venv/bin/python bench/soak.py --minutes 5 --workers 4 --chaos-every 30

Everything runs on 127.0.0.1 and is stopped at the end (also on Ctrl-C): the
gateway (``python -m mcpmux run -c CONFIG --ready-file ...``) in front of four
targets: server-everything over stdio (``evs``) and over streamable HTTP (``evh``,
its own process on a free port), and the demo stdio servers ``clock`` and ``notes``.

Load (raw httpx JSON-RPC, every request bounded by a timeout, every loop by the
deadline): ``--workers`` sessions doing ``tools/call`` (checked: an echo must come
back with the worker's own text, a sum must be right), ``tools/list``,
``resources/read`` and ``prompts/get``, each replacing its session every ~100
operations; one worker in four holds a GET stream that it reconnects every 10-30 s;
a churn task creates and deletes sessions continuously. A chaos task SIGKILLs the
child process of one stdio target (its pid from ``/api/targets``) every
``--chaos-every`` seconds, round robin, and records when the target is ready again.

A failed call is *explained* when it went to the target being restarted, between the
kill and one second after the target is ready again, and its error names that target.
Every other failure is *unexplained*.

Every ``--sample-every`` seconds: the gateway's RSS (VmRSS), open fds, threads,
child processes, its session count (admin API) and the call counters. At the end: the
table and a verdict. Memory flat: after a warm-up (the first 10% of the run, at least
one sample), the median RSS of the last third is within +15% of the first third's. Fds
flat: the last third's median within +10 (or +10%) of the first third's. Children: the
same count at the end as at the start. Sessions: back to what the harness still holds.
No unexplained failures. The exit status is 0 only when every check passes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import free_port, log

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "tests" / "peers"
NODE = PEERS / "node_modules" / "node" / "bin" / "node"
EVERYTHING = PEERS / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
ACCEPT = "application/json, text/event-stream"
VERSION = "2025-11-25"
CALL_TIMEOUT = 30.0
STDIO_TARGETS = ("evs", "clock", "notes")


# ------------------------------------------------------------------- processes


def descendants(pid: int) -> list[int]:
    """Live descendant pids of ``pid``; unlike the harness's, zombies do not count."""
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            kids.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS (MB), threads and open fds of ``pid``."""
    out = {"rss_mb": 0.0, "threads": 0.0, "fds": 0.0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key == "VmRSS":
                out["rss_mb"] = int(rest.split()[0]) / 1024
            elif key == "Threads":
                out["threads"] = int(rest)
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


class Procs:
    """Every process the soak starts, each in its own group, all stopped at the end."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, argv: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(self.logdir / f"{name}.log", "ab") as logf:
            proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **(env or {})}, cwd=ROOT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> list[int]:
        """SIGTERM each (gateway first), then SIGKILL its group; return leftover pids."""
        leftovers: list[int] = []
        for proc in list(self.procs):
            kids = descendants(proc.pid)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(Path(f"/proc/{k}").exists() for k in kids):
                time.sleep(0.05)
            for k in kids:
                if Path(f"/proc/{k}").exists() and "Z" not in Path(f"/proc/{k}/stat").read_text().rsplit(")", 1)[1][:3]:
                    leftovers.append(k)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(k, signal.SIGKILL)
            self.procs.remove(proc)
        return leftovers


# ------------------------------------------------------------------- counters


@dataclass
class Failure:
    at: float
    target: str
    what: str
    text: str


@dataclass
class Stats:
    ok: int = 0
    failed: int = 0
    failures: list[Failure] = field(default_factory=list)
    sessions_opened: int = 0
    sessions_deleted: int = 0
    stream_events: int = 0
    streams_opened: int = 0
    #: per target: [(killed at, ready again at or None)]
    outages: dict[str, list[tuple[float, float | None]]] = field(default_factory=dict)
    kills: int = 0

    def explained(self, f: Failure) -> bool:
        for killed, ready in self.outages.get(f.target, []):
            end = (ready if ready is not None else time.monotonic()) + 1.0
            if killed - 0.5 <= f.at <= end and f.target in f.text:
                return True
        return False

    def split(self) -> tuple[int, int]:
        explained = sum(1 for f in self.failures if self.explained(f))
        return explained, len(self.failures) - explained


# ------------------------------------------------------------------- MCP over raw httpx


class RpcFailed(Exception):
    pass


class Session:
    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url, self.sid = http, url, ""
        self.ids = itertools.count(1)

    def headers(self) -> dict[str, str]:
        return {"Accept": ACCEPT, "Content-Type": "application/json", "Mcp-Session-Id": self.sid,
                "MCP-Protocol-Version": VERSION}

    async def open(self) -> Session:
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "soak", "version": "0"}}}
        resp = await self.http.post(self.url, content=json.dumps(init),
                                    headers={"Accept": ACCEPT, "Content-Type": "application/json"})
        if resp.status_code != 200:
            raise RpcFailed(f"initialize: HTTP {resp.status_code}: {resp.text[:200]}")
        self.sid = resp.headers["mcp-session-id"]
        ack = await self.http.post(self.url, content=b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
                                   headers=self.headers())
        if ack.status_code != 202:
            raise RpcFailed(f"initialized: HTTP {ack.status_code}")
        return self

    async def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """The result, or RpcFailed with the error's text (message and data)."""
        rid = next(self.ids)
        msg = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params}
        resp = await self.http.post(self.url, content=json.dumps(msg), headers=self.headers())
        if resp.status_code != 200:
            raise RpcFailed(f"HTTP {resp.status_code}: {resp.text[:300]}")
        if resp.headers.get("content-type", "").startswith("text/event-stream"):
            answer = None
            for block in resp.text.replace("\r\n", "\n").split("\n\n"):
                data = "\n".join(ln[5:].lstrip() for ln in block.split("\n") if ln.startswith("data:"))
                if data.strip():
                    m = json.loads(data)
                    if m.get("id") == rid and "method" not in m:
                        answer = m
            if answer is None:
                raise RpcFailed(f"no answer on the stream: {resp.text[:300]}")
        else:
            answer = resp.json()
        if "error" in answer:
            raise RpcFailed(json.dumps(answer["error"])[:500])
        result: dict[str, Any] = answer["result"]
        return result

    async def delete(self) -> None:
        if self.sid:
            with contextlib.suppress(httpx.HTTPError):
                await self.http.delete(self.url, headers=self.headers())
            self.sid = ""


# ------------------------------------------------------------------- the soak


@dataclass
class Op:
    target: str
    what: str
    method: str
    params: dict[str, Any]
    check: str = ""  # "echo" | "sum" | "" (any result)


class Soak:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.procs = Procs(workdir)
        self.stats = Stats()
        self.stop = asyncio.Event()
        self.samples: list[dict[str, float]] = []
        self.ops: list[Op] = []
        self.gw_pid = 0
        self.mcp = self.admin = ""
        self.t0 = 0.0

    # -- start ----------------------------------------------------------------
    async def start(self) -> None:
        port = free_port()
        evh = self.procs.spawn([str(NODE), str(EVERYTHING), "streamableHttp"], "everything-http",
                               env={"PORT": str(port)})
        evh_log = self.workdir / "everything-http.log"
        await self.wait(lambda: f"listening on port {port}" in evh_log.read_text(errors="replace")
                        or (evh.poll() is not None and _raise("server-everything exited")), 30, "server-everything")
        py = sys.executable
        targets = [
            {"name": "evs", "stdio": {"command": str(NODE), "args": [str(EVERYTHING), "stdio"]}},
            {"name": "evh", "http": {"url": f"http://127.0.0.1:{port}/mcp"}},
            {"name": "clock", "stdio": {"command": py, "args": ["-m", "mcpmux.demo.clock"]}},
            {"name": "notes", "stdio": {"command": py, "args": ["-m", "mcpmux.demo.notes"]}},
        ]
        cfgdir = self.workdir / "config"  # its own directory: the gateway watches it
        cfgdir.mkdir()
        cfg = cfgdir / "mcpmux.json"
        cfg.write_text(json.dumps({"listen": {"host": "127.0.0.1", "port": 0},
                                   "admin": {"host": "127.0.0.1", "port": 0}, "targets": targets}, indent=1))
        ready = self.workdir / "ready.json"
        gw = self.procs.spawn([py, "-m", "mcpmux", "run", "-c", str(cfg), "--ready-file", str(ready),
                               "--log-level", "info"], "gateway", env={"PYTHONUNBUFFERED": "1"})
        self.procs.procs.insert(0, self.procs.procs.pop())  # stopped first
        await self.wait(lambda: (ready.exists() and ready.stat().st_size > 0)
                        or (gw.poll() is not None and _raise("gateway exited")), 60, "the gateway")
        info = json.loads(ready.read_text())
        self.mcp, self.admin, self.gw_pid = info["mcp"], info["admin"], gw.pid

        async def all_ready() -> bool:
            data = await self.targets()
            return bool(data) and all(t["state"] == "ready" for t in data.values())

        await self.wait_async(all_ready, 60, "all targets ready")
        await self.discover()

    async def wait(self, pred: Any, limit: float, what: str) -> None:
        deadline = time.monotonic() + limit
        while not pred():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)

    async def wait_async(self, pred: Any, limit: float, what: str) -> None:
        deadline = time.monotonic() + limit
        while not await pred():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)

    async def targets(self) -> dict[str, dict[str, Any]]:
        async with httpx.AsyncClient(timeout=10) as c:
            data = (await c.get(f"{self.admin}/api/targets")).json()
        self.last_admin = data
        return {t["name"]: t for t in data["targets"]}

    async def discover(self) -> None:
        """The operations: echo and sums (checked), lists, and one resource and one
        argument-less prompt per target as the catalogue offers them."""
        async with httpx.AsyncClient(timeout=CALL_TIMEOUT) as http:
            s = await Session(http, self.mcp).open()
            tools = {t["name"] for t in (await s.rpc("tools/list", {}))["tools"]}
            resources = (await s.rpc("resources/list", {}))["resources"]
            prompts = (await s.rpc("prompts/list", {}))["prompts"]
            await s.delete()
        for t in ("evs", "evh"):
            if f"{t}_echo" in tools:
                self.ops.append(Op(t, "echo", "tools/call", {"name": f"{t}_echo"}, "echo"))
        self.ops.append(Op("clock", "add", "tools/call", {"name": "clock_add"}, "sum"))
        self.ops.append(Op("notes", "list_notes", "tools/call", {"name": "notes_list_notes", "arguments": {}}))
        for t in ("evs", "evh", "clock", "notes"):
            self.ops.append(Op(t, "tools/list", "tools/list", {}))
            res = next((r for r in resources if r["uri"].startswith(f"{t}+")), None)
            if res is not None:
                self.ops.append(Op(t, "resources/read", "resources/read", {"uri": res["uri"]}))
            pr = next((p for p in prompts if p["name"].startswith(f"{t}_")
                       and not any(a.get("required") for a in p.get("arguments") or [])), None)
            if pr is not None:
                self.ops.append(Op(t, "prompts/get", "prompts/get", {"name": pr["name"], "arguments": {}}))
        log("operations: " + ", ".join(f"{o.target}:{o.what}" for o in self.ops))

    # -- load -----------------------------------------------------------------
    async def run_op(self, s: Session, op: Op, rnd: random.Random, wid: int) -> None:
        params = dict(op.params)
        if op.check == "echo":
            text = f"w{wid}-{rnd.randrange(10**9)}"
            params["arguments"] = {"message": text}
        elif op.check == "sum":
            a, b = rnd.randrange(10**6), rnd.randrange(10**6)
            params["arguments"] = {"a": a, "b": b}
        try:
            result = await asyncio.wait_for(s.rpc(op.method, params), CALL_TIMEOUT)
            if op.method == "tools/call" and result.get("isError"):
                raise RpcFailed(f"isError: {json.dumps(result)[:300]}")
            if op.check == "echo" and text not in json.dumps(result):
                raise RpcFailed(f"wrong echo (wanted {text}): {json.dumps(result)[:300]}")
            if op.check == "sum" and (result.get("structuredContent") or {}).get("sum") != a + b:
                raise RpcFailed(f"wrong sum: {json.dumps(result)[:300]}")
            self.stats.ok += 1
        except (RpcFailed, httpx.HTTPError, TimeoutError, ValueError, KeyError) as exc:
            self.stats.failed += 1
            self.stats.failures.append(Failure(time.monotonic(), op.target, op.what, f"{type(exc).__name__}: {exc}"))

    async def worker(self, wid: int) -> None:
        rnd = random.Random(wid)
        async with httpx.AsyncClient(timeout=CALL_TIMEOUT, limits=httpx.Limits(max_connections=4)) as http:
            stream: asyncio.Task[None] | None = None
            while not self.stop.is_set():
                s = Session(http, self.mcp)
                try:
                    await asyncio.wait_for(s.open(), CALL_TIMEOUT)
                except (RpcFailed, httpx.HTTPError, TimeoutError) as exc:
                    self.stats.failures.append(Failure(time.monotonic(), "-", "initialize", str(exc)))
                    self.stats.failed += 1
                    await asyncio.sleep(1)
                    continue
                self.stats.sessions_opened += 1
                if wid % 4 == 0:
                    stream = asyncio.create_task(self.get_stream(s, rnd))
                try:
                    for _ in range(rnd.randint(50, 150)):
                        if self.stop.is_set():
                            break
                        await self.run_op(s, rnd.choice(self.ops), rnd, wid)
                        await asyncio.sleep(self.args.pause_ms / 1000 * rnd.random() * 2)
                finally:
                    if stream is not None:
                        stream.cancel()
                        await asyncio.gather(stream, return_exceptions=True)
                        stream = None
                    await s.delete()
                    self.stats.sessions_deleted += 1

    async def get_stream(self, s: Session, rnd: random.Random) -> None:
        """A GET stream on ``s``, reconnected every 10-30 s, until cancelled."""
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as http:
            headers = {"Accept": "text/event-stream", "Mcp-Session-Id": s.sid, "MCP-Protocol-Version": VERSION}
            while True:
                with contextlib.suppress(httpx.HTTPError, TimeoutError):
                    async with asyncio.timeout(rnd.uniform(10, 30)):
                        async with http.stream("GET", s.url, headers=headers) as resp:
                            self.stats.streams_opened += 1
                            async for line in resp.aiter_lines():
                                if line.startswith("data:"):
                                    self.stats.stream_events += 1
                await asyncio.sleep(0.1)

    async def churn(self) -> None:
        """Sessions created and deleted continuously (with one call each)."""
        rnd = random.Random(-1)
        async with httpx.AsyncClient(timeout=CALL_TIMEOUT) as http:
            while not self.stop.is_set():
                s = Session(http, self.mcp)
                try:
                    await asyncio.wait_for(s.open(), CALL_TIMEOUT)
                    self.stats.sessions_opened += 1
                    await self.run_op(s, rnd.choice(self.ops), rnd, 999)
                except (RpcFailed, httpx.HTTPError, TimeoutError) as exc:
                    self.stats.failures.append(Failure(time.monotonic(), "-", "initialize", str(exc)))
                    self.stats.failed += 1
                finally:
                    await s.delete()
                    self.stats.sessions_deleted += 1
                await asyncio.sleep(0.2)

    async def chaos(self) -> None:
        """SIGKILL one stdio target's process every --chaos-every s (round robin)."""
        order = itertools.cycle(STDIO_TARGETS)
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.args.chaos_every)
            if self.stop.is_set():
                return
            name = next(order)
            before = (await self.targets()).get(name, {})
            pid = before.get("pid")
            if not pid or before.get("state") != "ready":
                log(f"chaos: {name} not ready (pid {pid}); skipped")
                continue
            killed = time.monotonic()
            self.stats.outages.setdefault(name, []).append((killed, None))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self.stats.kills += 1
            ready_at = None
            deadline = killed + 60
            while time.monotonic() < deadline:
                t = (await self.targets()).get(name, {})
                if t.get("state") == "ready" and t.get("pid") not in (None, pid):
                    ready_at = time.monotonic()
                    break
                await asyncio.sleep(0.1)
            self.stats.outages[name][-1] = (killed, ready_at)
            took = f"{ready_at - killed:.1f} s" if ready_at else "NOT READY after 60 s"
            log(f"chaos: killed {name} (pid {pid}); ready again in {took}")

    async def sampler(self) -> None:
        while True:
            await self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.args.sample_every)
            if self.stop.is_set():
                return

    async def sample(self) -> dict[str, float]:
        st = proc_status(self.gw_pid)
        try:
            await self.targets()
            sessions = float(self.last_admin["sessions"])
        except (httpx.HTTPError, ValueError, KeyError):
            sessions = -1.0
        explained, unexplained = self.stats.split()
        row = {"t": time.monotonic() - self.t0, **st, "children": float(len(descendants(self.gw_pid))),
               "sessions": sessions, "ok": float(self.stats.ok), "failed": float(self.stats.failed),
               "explained": float(explained), "unexplained": float(unexplained)}
        self.samples.append(row)
        log(fmt_row(row))
        return row

    async def run(self) -> int:
        await self.start()
        self.t0 = time.monotonic()
        deadline = self.t0 + self.args.minutes * 60
        log(f"soak: {self.args.minutes:g} min, {self.args.workers} workers, chaos every "
            f"{self.args.chaos_every:g} s, gateway pid {self.gw_pid}, logs in {self.workdir}")
        log(HEADER)
        tasks = [asyncio.create_task(self.worker(i)) for i in range(self.args.workers)]
        tasks += [asyncio.create_task(self.churn()), asyncio.create_task(self.chaos())]
        sampler = asyncio.create_task(self.sampler())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), max(0.0, deadline - time.monotonic()))
        self.stop.set()
        done, pending = await asyncio.wait(tasks, timeout=CALL_TIMEOUT + 15)
        for t in pending:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in done:
            if t.exception() is not None:
                log(f"task failed: {t.exception()!r}")
        await sampler
        await asyncio.sleep(1)  # let the deletes land
        final = await self.sample()
        return self.report(final, [t for t in done if t.exception() is not None])

    # -- verdict ----------------------------------------------------------------
    def report(self, final: dict[str, float], crashed: list[asyncio.Task[None]]) -> int:
        print()
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "|".join("---:" for _ in COLUMNS) + "|")
        for row in self.samples:
            print("| " + " | ".join(_cell(row, c) for c in COLUMNS) + " |")
        s = self.stats
        explained, unexplained = s.split()
        print()
        print(f"calls: {s.ok} ok, {s.failed} failed ({explained} explained by {s.kills} kills, "
              f"{unexplained} unexplained); sessions opened {s.sessions_opened}, deleted {s.sessions_deleted}; "
              f"GET streams opened {s.streams_opened}, events on them {s.stream_events}")
        for name, outs in s.outages.items():
            downs = ", ".join(f"{(r - k):.1f} s" if r else "never ready" for k, r in outs)
            print(f"restarts of {name}: {downs}")
        checks: list[tuple[str, bool, str]] = []
        warm = max(1, len(self.samples) // 10)
        body = self.samples[warm:-1] or self.samples[-1:]  # the last row is after the stop
        third = max(1, len(body) // 3)
        first, last = body[:third], body[-third:]
        rss0, rss1 = statistics.median(r["rss_mb"] for r in first), statistics.median(r["rss_mb"] for r in last)
        checks.append(("memory flat", rss1 <= rss0 * 1.15,
                       f"median RSS {rss0:.1f} MB (first third) -> {rss1:.1f} MB (last third), limit +15%"))
        fd0, fd1 = statistics.median(r["fds"] for r in first), statistics.median(r["fds"] for r in last)
        checks.append(("fds flat", fd1 <= fd0 + max(10, fd0 * 0.10),
                       f"median fds {fd0:g} -> {fd1:g}, limit +max(10, 10%)"))
        kids0, kids1 = self.samples[0]["children"], final["children"]
        checks.append(("children stable", kids1 == kids0, f"child processes {kids0:g} at start, {kids1:g} at the end"))
        checks.append(("sessions released", final["sessions"] == 0,
                       f"{final['sessions']:g} sessions left after every worker deleted its own"))
        checks.append(("no unexplained failures", unexplained == 0, f"{unexplained} unexplained of {s.failed}"))
        checks.append(("every kill recovered", all(r is not None for outs in s.outages.values() for _, r in outs),
                       f"{s.kills} kills"))
        checks.append(("no task crashed", not crashed, ", ".join(repr(t.exception()) for t in crashed) or "none"))
        bad = [f for f in s.failures if not s.explained(f)]
        if bad:
            print(f"\nunexplained failures (first 10 of {len(bad)}):")
            for f in bad[:10]:
                print(f"  t={f.at - self.t0:7.1f}s {f.target}:{f.what}: {f.text[:300]}")
        print("\nverdict:")
        for name, passed, detail in checks:
            print(f"  {'PASS' if passed else 'FAIL'}  {name}: {detail}")
        ok = all(p for _, p, _ in checks)
        print(f"\nsoak {'PASSED' if ok else 'FAILED'} ({self.args.minutes:g} min)")
        return 0 if ok else 1


COLUMNS = ["time s", "RSS MB", "fds", "threads", "children", "sessions", "calls ok", "calls failed",
           "explained", "unexplained"]
KEYS = ["t", "rss_mb", "fds", "threads", "children", "sessions", "ok", "failed", "explained", "unexplained"]
HEADER = " ".join(f"{c:>11}" for c in COLUMNS)


def _cell(row: dict[str, float], col: str) -> str:
    key = KEYS[COLUMNS.index(col)]
    return f"{row[key]:.1f}" if key in ("t", "rss_mb") else f"{row[key]:g}"


def fmt_row(row: dict[str, float]) -> str:
    return " ".join(f"{_cell(row, c):>11}" for c in COLUMNS)


def _raise(msg: str) -> bool:
    raise RuntimeError(msg)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    ap.add_argument("--workers", type=int, default=8, help="concurrent session workers (default 8)")
    ap.add_argument("--chaos-every", type=float, default=60.0, help="seconds between kills (default 60)")
    ap.add_argument("--sample-every", type=float, default=10.0, help="seconds between samples (default 10)")
    ap.add_argument("--pause-ms", type=float, default=10.0, help="mean pause between a worker's calls")
    args = ap.parse_args()
    if not (NODE.exists() and EVERYTHING.exists()):
        print("tests/peers is not installed: run scripts/setup.sh", file=sys.stderr)
        return 2
    args.workers = max(1, min(args.workers, 64))
    with tempfile.TemporaryDirectory(prefix="mcpmux-soak-") as tmp:
        soak = Soak(args, Path(tmp))
        try:
            code = asyncio.run(soak.run())
        except KeyboardInterrupt:
            code = 130
        finally:
            leftovers = soak.procs.stop_all()
            if leftovers:
                print(f"leftover processes killed: {leftovers}")
                code = code or 1
            gw_log = Path(tmp) / "gateway.log"
            if gw_log.exists():
                tracebacks = gw_log.read_text(errors="replace").count("Traceback")
                print(f"gateway log: {tracebacks} tracebacks")
                if tracebacks:
                    keep = ROOT / "bench" / "results" / "soak-gateway.log"
                    keep.parent.mkdir(exist_ok=True)
                    keep.write_text(gw_log.read_text(errors="replace"))
                    print(f"kept in {keep}")
    return code


if __name__ == "__main__":
    sys.exit(main())
