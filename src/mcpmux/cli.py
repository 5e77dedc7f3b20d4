"""The ``mcpmux`` command: ``run`` the gateway, ``validate`` a config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from . import __version__
from .admin import admin_app
from .config import ConfigError, GatewayConfig, config_from_dict, load_config
from .discovery.file import ConfigFileSource
from .gateway import Gateway
from .listener.http import StreamableHTTP

log = logging.getLogger("mcpmux")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the CLI stops both listeners itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bound_port(server: uvicorn.Server) -> int:
    for s in server.servers:
        for sock in s.sockets:
            return int(sock.getsockname()[1])
    return 0


def load(path: str | None) -> tuple[GatewayConfig, str | None]:
    """The config to run and the file to watch: -c FILE, else ./mcpmux.yaml, else the demo."""
    if not path and Path("mcpmux.yaml").is_file():
        path = "mcpmux.yaml"
    if path:
        return load_config(path), path
    from .demo import demo_config

    return config_from_dict(demo_config()), None


async def serve(config: GatewayConfig, path: str | None, ready_file: str | None = None) -> None:
    gateway = Gateway(config)
    source = path or "embedded demo"
    if path is None:
        gateway.config_source = "demo"
    mcp = _Server(uvicorn.Config(StreamableHTTP(gateway), host=config.listen.host, port=config.listen.port,
                                 lifespan="off", log_level="warning", access_log=False,
                                 http="httptools", loop="none", timeout_graceful_shutdown=3))
    servers = [mcp]
    if config.admin.enabled:
        servers.append(_Server(uvicorn.Config(admin_app(gateway), host=config.admin.host, port=config.admin.port,
                                              lifespan="off", log_level="warning", access_log=False,
                                              loop="none", timeout_graceful_shutdown=1)))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await gateway.start()
    if path is not None:
        watcher = ConfigFileSource(path, gateway.reload)
        gateway.config_status = watcher.status
        gateway.add_source("file", watcher.run)
    tasks = [asyncio.create_task(s.serve(), name=f"uvicorn-{i}") for i, s in enumerate(servers)]
    try:
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                for t in tasks:
                    if t.done() and t.exception():
                        raise t.exception()  # type: ignore[misc]
                raise SystemExit("mcpmux: a listener failed to start (port in use?)")
            await asyncio.sleep(0.01)
        mcp_url = f"http://{_host(config.listen.host)}:{_bound_port(mcp)}/mcp"
        admin_url = (
            f"http://{_host(config.admin.host)}:{_bound_port(servers[1])}" if config.admin.enabled else None
        )
        # Give targets a moment so the first lines show real states; readiness is async anyway.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gateway.wait_ready(), 3)
        print(f"mcpmux {__version__} ({source})", flush=True)
        print(f"  MCP:   {mcp_url}", flush=True)
        if admin_url:
            print(f"  admin: {admin_url}/api/targets", flush=True)
        for target in gateway.targets.values():
            extra = f" ({target.last_error})" if target.last_error else ""
            print(f"  target {target.name} [{target.kind}]: {target.state}{extra}", flush=True)
        if ready_file:
            _write_ready_file(ready_file, {"mcp": mcp_url, "admin": admin_url, "pid": os.getpid()})
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
    finally:
        log.info("shutting down")
        for s in servers:
            s.should_exit = True
        await gateway.aclose()
        await asyncio.gather(*tasks, return_exceptions=True)


def _write_ready_file(path: str, info: dict[str, object]) -> None:
    """Written whole, then renamed into place: a watcher that sees the file exist must
    never read it half-written (that made e2e tests flaky under load)."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, path)


def _host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcpmux", description="A multiplexing MCP gateway.")
    parser.add_argument("--version", action="version", version=f"mcpmux {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway")
    run.add_argument("-c", "--config", help="config file (default: ./mcpmux.yaml, else the embedded demo)")
    run.add_argument("--log-level", default=os.environ.get("MCPMUX_LOG_LEVEL", "info"))
    run.add_argument("--ready-file", help=argparse.SUPPRESS)
    val = sub.add_parser("validate", help="check a config file and exit")
    val.add_argument("file")
    args = parser.parse_args(argv)

    if args.command == "validate":
        try:
            cfg = load_config(args.file)
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"{args.file}: valid ({len(cfg.targets)} targets)")
        return 0

    _setup_logging(args.log_level)
    try:
        config, source = load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run  # type: ignore[assignment]
    try:
        runner(serve(config, source, args.ready_file))
    except KeyboardInterrupt:
        pass
    return 0
