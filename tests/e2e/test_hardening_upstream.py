"""Hostile upstreams: bounded reads, no secrets across redirects, secrets never printed.

A real gateway (subprocess) stands in front of :mod:`tests.peers.hostile` servers and the
healthy ``clock`` demo. The gateway's memory is read from ``/proc/PID/status``
(``VmHWM``: the peak, so a spike that was freed again still counts).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.peers.hostile import HostileHttpServer, MiB, RecordingServer
from tests.support.gateway import Gateway, peak_rss_kb, run_gateway
from tests.support.mcp_http import RawClient

from mcpmux.demo import demo_config

CLOCK = next(t for t in demo_config()["targets"] if t["name"] == "clock")
#: The gateway idles at ~60 MB; reading any of the hostile answers whole costs GBs.
RSS_BOUND_KB = 300 * 1024
TOKEN = "tok-7f3a9c2e5b1d4h8k"
API_KEY = "key-b6e1d0c9a8f7e6d5"




@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, HostileHttpServer]]:
    with contextlib.ExitStack() as stack:
        peer = stack.enter_context(HostileHttpServer())
        reject = stack.enter_context(HostileHttpServer(reject_all=True))
        targets: list[dict[str, Any]] = [
            CLOCK,
            {"name": "hostile", "http": {"url": peer.url, "headers": {"Authorization": f"Bearer {TOKEN}"}},
             "timeout": 10},
            {"name": "locked", "http": {"url": reject.url, "headers": {"Authorization": f"Bearer {TOKEN}",
                                                                        "X-Api-Key": API_KEY}},
             "timeout": 2},
        ]
        gw = stack.enter_context(run_gateway({"targets": targets}, tmp_path_factory.mktemp("hostile"), wait=False))
        gw.wait_target("clock")
        gw.wait_target("hostile")
        yield gw, peer


@pytest.mark.parametrize("tool", ["huge", "huge_sse", "big_error"])
async def test_huge_answers_are_refused_and_memory_stays_bounded(
    hostile: tuple[Gateway, HostileHttpServer], tool: str
) -> None:
    gw, peer = hostile
    async with RawClient(gw.mcp_url, 60) as c:
        await c.initialize()
        started = time.monotonic()
        resp = await c.call(f"hostile_{tool}")
        took = time.monotonic() - started
        err = resp.get("error")
        assert err is not None, str(resp)[:500]
        assert err["data"] == {"target": "hostile"}, err
        assert "'hostile'" in err["message"], err
        if tool == "big_error":
            assert "HTTP 500" in err["message"] and len(err["message"]) < 400, err
        else:
            assert str(16 * MiB) in err["message"] and "max_response_bytes" in err["message"], err
        # The healthy target, and the hostile one's normal tool, keep working.
        ok = await c.call("clock_add", {"a": 2, "b": 3})
        assert ok["result"]["structuredContent"] == {"sum": 5}, ok
        again = await c.call("hostile_ok")
        assert again["result"]["content"][0]["text"] == "ok", again
    peak = peak_rss_kb(gw.proc.pid)
    assert peak < RSS_BOUND_KB, f"gateway peak RSS {peak} kB after {tool}"
    # The peer was cut off long before it finished (never 1 GB / 300 MB read).
    assert peer.sent and peer.sent[-1] < 200 * MiB, peer.sent
    assert took < 30, took
    print(f"{tool}: refused in {took:.2f}s; peer wrote {peer.sent[-1] // MiB} MiB; gateway peak RSS {peak // 1024} MB")


async def test_a_401_echoing_the_token_never_shows_it(hostile: tuple[Gateway, HostileHttpServer]) -> None:
    gw, _ = hostile
    async with RawClient(gw.mcp_url, 30) as c:
        await c.initialize()
        resp = await c.call("hostile_echo_auth")
        err = resp["error"]
        assert "HTTP 401" in err["message"], err
        assert "authorization" in err["message"].lower(), err  # the echo is there ...
        assert TOKEN not in json.dumps(resp), err  # ... the token is not
    locked = _wait(lambda: gw.targets()["locked"], lambda s: s["state"] == "failed" and s["lastError"])
    assert "HTTP 401" in locked["lastError"], locked
    raw = httpx.get(f"{gw.admin_url}/api/targets", timeout=5).text
    assert TOKEN not in raw and API_KEY not in raw, raw
    async with RawClient(gw.mcp_url, 30) as c:
        await c.initialize()
        down = await c.call("locked_anything")
        assert TOKEN not in json.dumps(down) and API_KEY not in json.dumps(down), down
    log = gw.log()
    assert "HTTP 401" in log
    assert TOKEN not in log and API_KEY not in log


def test_cross_origin_redirect_never_carries_configured_headers(tmp_path: Path) -> None:
    with RecordingServer() as other, HostileHttpServer(redirect_to=other.url) as peer:
        target = {"name": "moved", "http": {"url": peer.url, "headers": {"X-Api-Key": API_KEY}}, "timeout": 2}
        with run_gateway({"targets": [CLOCK, target]}, tmp_path, wait=False) as gw:
            status = _wait(lambda: gw.targets()["moved"], lambda s: s["state"] == "failed" and s["lastError"])
            assert peer.requests >= 1
            assert "307" in status["lastError"] and other.url.rsplit("/", 1)[0] in status["lastError"], status
            assert "not followed" in status["lastError"], status
    assert not any("x-api-key" in h for h in other.seen), other.seen
    assert other.seen == [], "the redirect was followed"


# ------------------------------------------------------------------ secrets in config errors


def test_invalid_config_edit_never_prints_the_secret(tmp_path: Path) -> None:
    secret = "sk-live-51Hq8e2TzZ"
    env_backup = os.environ.get("HARDEN_SECRET")
    os.environ["HARDEN_SECRET"] = secret  # inherited by the gateway subprocess
    try:
        with run_gateway({"targets": [CLOCK]}, tmp_path) as gw:
            bad = json.loads(gw.config_path.read_text())
            # The secret lands where an integer belongs: the error quotes the value.
            bad["limits"] = {"page_size": "${HARDEN_SECRET}"}
            gw.config_path.write_text(json.dumps(bad))
            status = _wait(lambda: httpx.get(f"{gw.admin_url}/api/config/status", timeout=5).json(),
                           lambda s: s["valid"] is False)
            assert any("page_size" in e for e in status["errors"]), status
            assert secret not in json.dumps(status), status
            _wait(lambda: gw.log(), lambda text: "edit rejected" in text)
            assert secret not in gw.log()
            out = subprocess.run([sys.executable, "-m", "mcpmux", "validate", str(gw.config_path)],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 1 and "page_size" in out.stderr, out
            assert secret not in out.stdout + out.stderr, out.stderr
    finally:
        if env_backup is None:
            os.environ.pop("HARDEN_SECRET", None)
        else:
            os.environ["HARDEN_SECRET"] = env_backup


def _wait(get: Any, ok: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = get()
        if ok(value):
            return value
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout}s: {str(value)[-3000:]}")
