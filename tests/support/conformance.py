"""Run the MCP conformance suite (server mode) and the pinned Node peers from Python.

The npm packages live in ``tests/peers`` (``scripts/setup.sh`` runs ``npm ci`` there):

* ``@modelcontextprotocol/conformance`` 0.1.16 and, aliased as ``conformance-alpha``,
  0.2.0-alpha.12. Both need Node >= 22, which the ``node`` npm package provides at
  ``tests/peers/node_modules/node/bin/node`` (the system Node may be older).
* ``@modelcontextprotocol/server-everything`` (see :func:`server_everything_cmd`).

Suite invocation (what :func:`run_conformance` runs, with cwd in a temp dir)::

    <node22> <pkg>/dist/index.js server --url URL -o OUT [--requirements 2025-11-25]

Without ``--requirements`` the "active" suite runs (all server scenarios except the
pending ones). Each scenario writes ``OUT/server-<scenario>-<ISO timestamp>/checks.json``:
a list of ``{id, name, status, errorMessage?, ...}``; that file, not the coloured stdout,
is what gets parsed. Check ids repeat across scenarios (the alpha appends
``wire-schema-valid`` to each), so results are keyed ``"<scenario>/<check id>"``.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

#: The three suites every comparison runs: (alpha?, --requirements) as pytest params.
SUITES = [
    pytest.param(False, None, id="0.1.16"),
    pytest.param(True, "2025-11-25", id="alpha-2025-11-25"),
    pytest.param(True, "2026-07-28", id="alpha-2026-07-28"),
]

_STABLE_PKG = Path("node_modules/@modelcontextprotocol/conformance")
_ALPHA_PKG = Path("node_modules/conformance-alpha")
_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")
_RUNNING = re.compile(r"^=== Running scenario: (?P<scenario>\S+) ===$", re.MULTILINE)
_SKIPPED = re.compile(r"^SKIPPED: scenario '(?P<scenario>[^']+)'", re.MULTILINE)
# When a key occurs more than once (e.g. repeated INFO checks), keep the most telling status.
_RANK = {"FAILURE": 5, "WARNING": 4, "SUCCESS": 3, "INFO": 2, "SKIPPED": 1}


def peers_dir() -> Path:
    """``tests/peers``: where the pinned npm peers and the conformance backend live."""
    return Path(__file__).resolve().parents[1] / "peers"


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run scripts/setup.sh (npm ci in tests/peers)")
    return path


def node22_path() -> Path:
    """The Node 22 binary installed by the ``node`` npm package (override: ``MCPMUX_NODE22``)."""
    override = os.environ.get("MCPMUX_NODE22")
    if override:
        return Path(override)
    return _require(peers_dir() / "node_modules" / "node" / "bin" / "node")


def conformance_entry(*, alpha: bool = False) -> Path:
    """``dist/index.js`` of the stable (0.1.16) or alpha (0.2.0-alpha.12) suite."""
    return _require(peers_dir() / (_ALPHA_PKG if alpha else _STABLE_PKG) / "dist" / "index.js")


def server_everything_cmd(mode: str = "stdio") -> list[str]:
    """Argv that starts the reference ``server-everything`` peer.

    The transport is the first CLI argument: ``stdio`` (default), ``sse`` or
    ``streamableHttp``. The HTTP modes listen on ``$PORT`` (default 3001) on all
    interfaces; ``PORT=0`` works but is then unknowable (the log echoes ``$PORT``, not
    the bound port), so pass a free port in the env. Endpoints: streamableHttp serves
    ``/mcp`` and logs ``MCP Streamable HTTP Server listening on port N`` to stderr when
    ready; sse serves ``GET /sse`` + ``POST /message`` and logs ``Server is running on
    port N`` to stderr. It has no DNS-rebinding protection.
    """
    if mode not in ("stdio", "sse", "streamableHttp"):
        raise ValueError(f"unknown server-everything mode {mode!r}")
    entry = peers_dir() / "node_modules/@modelcontextprotocol/server-everything/dist/index.js"
    return [str(node22_path()), str(_require(entry)), mode]


@dataclass
class Check:
    """One check as the suite reported it."""

    scenario: str
    id: str
    status: str
    error: str | None = None


@dataclass
class ConformanceRun:
    """Everything one suite run produced; ``statuses`` is what most callers want."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    checks: list[Check] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)

    def with_status(self, status: str) -> list[str]:
        return sorted(k for k, v in self.statuses.items() if v == status)

    def failure_report(self) -> str:
        """Human-readable list of non-passing checks, for assertion messages."""
        lines = [
            f"{c.scenario}/{c.id}: {c.status}: {c.error or ''}".rstrip(": ")
            for c in self.checks
            if c.status in ("FAILURE", "WARNING")
        ]
        lines += [
            f"{k}: FAILURE (scenario crashed, no checks.json)"
            for k, v in self.statuses.items()
            if "/" not in k and v == "FAILURE"
        ]
        return "\n".join(lines) or "(none)"


def _merge(statuses: dict[str, str], key: str, status: str) -> None:
    old = statuses.get(key)
    if old is None or _RANK.get(status, 0) > _RANK.get(old, 0):
        statuses[key] = status


def run_conformance_full(
    url: str,
    *,
    alpha: bool = False,
    requirements: str | None = None,
    scenario: str | None = None,
    timeout: float = 600,
) -> ConformanceRun:
    """Run the suite's server mode against ``url`` and collect per-check results.

    ``requirements`` (alpha only, e.g. ``"2025-11-25"``) runs exactly the scenarios that
    spec revision requires, including its not-scored ones. ``scenario`` runs one scenario.
    A scenario that crashed without writing ``checks.json`` is reported under its bare
    name as ``FAILURE``; one that produced no checks (not applicable) as ``SKIPPED``.
    """
    argv = [str(node22_path()), str(conformance_entry(alpha=alpha)), "server", "--url", url]
    if requirements is not None:
        if not alpha:
            raise ValueError("--requirements needs the 0.2.0 alpha suite (alpha=True)")
        argv += ["--requirements", requirements]
    if scenario is not None:
        argv += ["--scenario", scenario]
    with tempfile.TemporaryDirectory(prefix="mcpmux-conformance-") as tmp:
        out = Path(tmp) / "results"
        argv += ["--output-dir", str(out)]
        proc = subprocess.run(
            argv, cwd=tmp, capture_output=True, text=True, timeout=timeout, check=False
        )
        run = ConformanceRun(argv, proc.returncode, proc.stdout, proc.stderr)
        seen: set[str] = set()
        for checks_file in sorted(out.glob("*/checks.json")):
            match = _RESULT_DIR.match(checks_file.parent.name)
            name = match["scenario"] if match else checks_file.parent.name
            seen.add(name)
            raw = json.loads(checks_file.read_text())
            if not raw:
                _merge(run.statuses, name, "SKIPPED")
            for item in raw:
                check = Check(name, str(item["id"]), str(item["status"]), item.get("errorMessage"))
                run.checks.append(check)
                _merge(run.statuses, f"{name}/{check.id}", check.status)
    for name in _SKIPPED.findall(proc.stdout):
        _merge(run.statuses, name, "SKIPPED")
        seen.add(name)
    for name in _RUNNING.findall(proc.stdout) or ([scenario] if scenario else []):
        if name not in seen:
            _merge(run.statuses, name, "FAILURE")
    if not run.statuses:
        raise RuntimeError(
            f"conformance suite produced no results (exit {proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return run


def run_conformance(
    url: str,
    *,
    alpha: bool = False,
    requirements: str | None = None,
    timeout: float = 600,
) -> dict[str, str]:
    """``{"<scenario>/<check id>": "SUCCESS" | "FAILURE" | "WARNING" | "INFO" | ...}``."""
    return run_conformance_full(
        url, alpha=alpha, requirements=requirements, timeout=timeout
    ).statuses


@contextmanager
def conformance_backend(
    *, host: str = "127.0.0.1", stderr: IO[str] | None = None, startup_timeout: float = 30
) -> Iterator[str]:
    """Run ``tests/peers/conformance_server.py`` on a free port; yield its ``/mcp`` URL.

    The server is killed on exit. ``stderr`` defaults to DEVNULL so an unread pipe can
    never block it.
    """
    argv = [sys.executable, str(peers_dir() / "conformance_server.py"), "--host", host]
    proc = subprocess.Popen(
        [*argv, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=stderr if stderr is not None else subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + startup_timeout
            line = ""
            while not line.startswith("LISTENING "):
                left = deadline - time.monotonic()
                if left <= 0 or proc.poll() is not None:
                    raise RuntimeError(f"conformance backend did not start (exit {proc.poll()})")
                if sel.select(left):
                    line = proc.stdout.readline()
        yield line.split()[1]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def reference_server_cmd() -> list[str]:
    """Argv of the conformance repository's ``everything-server`` (vendored, run by tsx).

    It listens on ``$PORT`` (pass a free one: ``PORT=0`` is logged, not resolved) on
    127.0.0.1 (``loopback.mjs`` is preloaded), serves ``/mcp`` for both eras, and prints
    ``MCP Conformance Test Server running on http://localhost:N`` once listening.
    """
    here = peers_dir() / "reference-server"
    # tsx's loader in this process (its CLI would re-spawn Node without our preload).
    tsx = _require(peers_dir() / "node_modules" / "tsx" / "dist" / "loader.mjs")
    return [
        str(node22_path()),
        "--import",
        (here / "loopback.mjs").as_uri(),
        "--import",
        tsx.as_uri(),
        str(_require(here / "everything-server.ts")),
    ]


@contextmanager
def _peer(argv: list[str], log_path: Path, url_in: Callable[[str], str | None], what: str,
          timeout: float, **popen: Any) -> Iterator[str]:
    """Run a peer in its own process group, output to ``log_path`` (an unread pipe
    would block it); yield the URL ``url_in`` finds in its output; kill the group."""
    import signal

    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True, **popen)
    try:
        deadline = time.monotonic() + timeout
        while (url := url_in(log_path.read_text(errors="replace"))) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start (exit {proc.poll()}):\n"
                                   f"{log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def reference_server(log_path: Path, *, startup_timeout: float = 60) -> Iterator[str]:
    """Run the reference server on a free loopback port; yield its ``/mcp`` URL."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    ready = f"running on http://localhost:{port}"
    with _peer(reference_server_cmd(), log_path, lambda out: f"http://127.0.0.1:{port}/mcp" if ready in out else None,
               "reference server", startup_timeout, cwd=peers_dir() / "reference-server",
               env={**os.environ, "PORT": str(port)}) as url:
        yield url


@contextmanager
def tasks_server(log_path: Path, *, startup_timeout: float = 30) -> Iterator[str]:
    """Run ``tests/peers/tasks_server.py`` (the SEP-2663 stand-in) on a free loopback
    port; yield its ``/mcp`` URL. It prints ``LISTENING <port>`` once bound."""
    def url_in(out: str) -> str | None:
        found = re.search(r"^LISTENING (\d+)$", out, re.MULTILINE)
        return f"http://127.0.0.1:{found[1]}/mcp" if found else None

    with _peer([sys.executable, str(peers_dir() / "tasks_server.py"), "0"], log_path, url_in,
               "tasks server", startup_timeout) as url:
        yield url


def baseline(cache: dict[Any, ConformanceRun], url: str, alpha: bool, req: str | None) -> ConformanceRun:
    """The direct run of a suite, made once per module and shared by its layouts."""
    if (url, alpha, req) not in cache:
        cache[(url, alpha, req)] = run_conformance_full(url, alpha=alpha, requirements=req)
    return cache[(url, alpha, req)]


def assert_nothing_lost(base: ConformanceRun, via: ConformanceRun, log: str, *, floor: int,
                        only: str = "") -> None:
    """Every check (starting with ``only``) that passes directly passes through mcpmux;
    ``floor``: the fewest direct passes that make the comparison mean something."""
    passed = [k for k in base.with_status("SUCCESS") if k.startswith(only)]
    assert len(passed) >= floor, f"baseline too small to mean anything:\n{base.failure_report()}"
    lost = sorted(k for k in base.with_status("SUCCESS") if via.statuses.get(k) != "SUCCESS")
    errors = {f"{c.scenario}/{c.id}": c.error or "" for c in via.checks}
    details = "\n".join(f"  {k}: {via.statuses.get(k)} {errors.get(k, '')}" for k in lost)
    assert not lost, (f"{len(lost)} checks pass directly but not through mcpmux:\n{details}\n"
                      f"--- gateway log tail:\n{log[-4000:]}")
