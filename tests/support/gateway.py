"""Run the real ``mcpmux`` CLI as a subprocess on free loopback ports."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


@dataclass
class Gateway:
    mcp_url: str
    admin_url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    config_path: Path
    #: The A2A listener (None: the config has no ``a2a`` section).
    a2a_url: str | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def targets(self) -> dict[str, dict[str, Any]]:
        data = httpx.get(f"{self.admin_url}/api/targets", timeout=5).json()
        return {t["name"]: t for t in data["targets"]}

    def wait_target(self, name: str, state: str = "ready", timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = self.targets().get(name, {})
            if last.get("state") == state:
                return last
            time.sleep(0.05)
        raise AssertionError(f"target {name} not {state} after {timeout}s: {last}\n{self.log()[-3000:]}")

    def wait_target_gone(self, name: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while name in self.targets():
            if time.monotonic() > deadline:
                raise AssertionError(f"target {name} still there after {timeout}s\n{self.log()[-3000:]}")
            time.sleep(0.05)


def free_config(config: dict[str, Any], port: int = 0) -> dict[str, Any]:
    """Tests never take fixed ports: listen and admin pick free ones (``port``: a free
    port the test chose, when it must know the URL before the gateway starts)."""
    cfg = dict(config)
    cfg["listen"] = {**cfg.get("listen", {}), "host": "127.0.0.1", "port": port}
    cfg["admin"] = {**cfg.get("admin", {}), "host": "127.0.0.1", "port": 0}
    if "a2a" in cfg:
        cfg["a2a"] = {**cfg["a2a"], "listen": {"host": "127.0.0.1", "port": 0}}
    return cfg


@contextlib.contextmanager
def run_gateway(
    config: dict[str, Any], tmp_path: Path, wait: bool = True, *, port: int = 0
) -> Iterator[Gateway]:
    """Start ``mcpmux run -c`` with ``config`` (ports default to 0) and stop it after."""
    cfg_path = tmp_path / f"mcpmux-{time.monotonic_ns()}.json"
    cfg_path.write_text(json.dumps(free_config(config, port)))
    ready = tmp_path / f"ready-{time.monotonic_ns()}.json"
    log_path = tmp_path / f"gateway-{time.monotonic_ns()}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mcpmux", "run", "-c", str(cfg_path), "--ready-file", str(ready),
             "--log-level", "debug"],
            stdout=logf, stderr=subprocess.STDOUT, env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if proc.poll() is not None:
                raise AssertionError(f"gateway exited with {proc.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"gateway did not start:\n{log_path.read_text()}")
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        gw = Gateway(info["mcp"], info["admin"], proc, log_path, cfg_path, info.get("a2a"))
        if wait:
            for t in config.get("targets", []):
                gw.wait_target(t["name"])
        yield gw
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def children_of(pid: int) -> list[int]:
    """Live descendant pids (for leak checks)."""
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.append(int(entry.name))
            out.extend(children_of(int(entry.name)))
    return out


def peak_rss_kb(pid: int) -> int:
    """A process's peak resident memory (``VmHWM``): a spike that was freed still counts."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")
