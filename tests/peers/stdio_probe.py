"""A stdio MCP server that reports how it was started, for process-handling tests.

``python tests/peers/stdio_probe.py [--stubborn]``

* writes ``stdio-probe: started pid N`` to stderr at start (the gateway logs it under
  the target's name);
* tool ``whoami``: its pid, working directory and whole environment (structured);
* tool ``spawn``: starts a grandchild (``sleep``) in the probe's process group and
  returns its pid, so a test can check the gateway stops the group, not just the child;
* ``--stubborn``: ignores SIGTERM and outlives its stdin, so only SIGKILL (after the
  grace period) stops it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from mcpmux.demo.stdio_server import Ctx, StdioServer, text_result

server = StdioServer("stdio-probe", "1.0.0")
_children: list[subprocess.Popen[bytes]] = []


@server.tool("whoami", "pid, cwd and environment of this process", {"type": "object"})
async def whoami(args: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    info = {"pid": os.getpid(), "cwd": os.getcwd(), "env": dict(os.environ)}
    return text_result(f"pid {info['pid']}", info)


@server.tool("spawn", "start a grandchild process and return its pid", {"type": "object"})
async def spawn(args: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    proc = subprocess.Popen(["sleep", "1000"], stdin=subprocess.DEVNULL)  # noqa: ASYNC220
    _children.append(proc)
    return text_result(f"pid {proc.pid}", {"pid": proc.pid})


if __name__ == "__main__":
    stubborn = "--stubborn" in sys.argv
    if stubborn:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"stdio-probe: started pid {os.getpid()}", file=sys.stderr, flush=True)
    server.run()
    if stubborn:
        time.sleep(1000)
