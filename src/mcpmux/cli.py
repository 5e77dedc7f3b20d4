"""The ``mcpmux`` command: ``run`` the gateway, serve it on ``stdio``, ``bridge`` one
stdio server to HTTP, ``validate`` a config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from . import __version__, native, redact
from .a2a.guard import PolicyGuard
from .a2a.side import A2aSide
from .admin import admin_app
from .config import ConfigError, GatewayConfig, config_from_dict, load_config
from .discovery.file import ConfigFileSource
from .dispatch import Dispatcher
from .gateway import Gateway
from .listener.auth import ResourceServer
from .listener.guard import HostGuard
from .listener.h1 import protocol_class
from .listener.http import StreamableHTTP
from .listener.legacy_sse import LegacySSE
from .observability import tracing
from .observability.access import JsonFormatter
from .observability.observer import Observer
from .observability.workers import ENV as WORKER_DIR
from .observability.workers import WorkerMetrics
from .policy import AllowAll, Policy
from .upstream.credentials import UpstreamCredentials

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


def _listener_config(app: object, config: GatewayConfig, host: str, port: int, jsonrpc: bool,
                     **extra: object) -> uvicorn.Config:
    """uvicorn settings shared by the MCP and admin listeners: the Host check and header
    limits (listener/guard.py), keep-alive, header timeout and connection limits. These
    are read at start; a reload does not change them."""
    limits = config.limits
    guarded = HostGuard(app, host, config.allowed_hosts, limits.max_header_bytes, jsonrpc=jsonrpc)
    return uvicorn.Config(
        # asgi3 said, not detected: HostGuard.__call__ returns the app's coroutine.
        guarded, interface="asgi3", host=host, port=port, lifespan="off", log_level="warning",
        access_log=False, loop="none",
        http=protocol_class(limits.max_header_bytes, limits.header_timeout, limits.max_connections),
        timeout_keep_alive=max(1, round(limits.keepalive_timeout)),
        **extra,  # type: ignore[arg-type]
    )


def load(path: str | None) -> tuple[GatewayConfig, str | None]:
    """The config to run and the file to watch: -c FILE, else ./mcpmux.yaml, else the demo."""
    if not path and Path("mcpmux.yaml").is_file():
        path = "mcpmux.yaml"
    if path:
        return load_config(path), path
    from .demo import demo_config

    return config_from_dict(demo_config()), None


async def serve(
    config: GatewayConfig, path: str | None, ready_file: str | None = None, bridge: str | None = None,
    sockets: dict[str, socket.socket] | None = None,
    observe: ObserveOptions | None = None,
) -> None:
    """``run`` (and, with ``bridge`` naming the command, ``bridge``: one target, transparent)."""
    gateway = Gateway(config)
    source = path or (f"bridge: {bridge}" if bridge else "embedded demo")
    if path is None:
        gateway.config_source = "bridge" if bridge else "demo"
    gateway.transparent = bridge is not None
    auth, credentials = security(config)
    replication = None
    if config.state is not None:
        from .replicas import Replication  # imports redis: only when state is shared

        replication = Replication(config, limits=lambda: gateway.config.limits)
    dispatcher = Dispatcher(gateway, policy_factory=_policy, credentials=credentials,
                            sessions=replication.sessions if replication is not None else None)
    _observe(dispatcher, observe or ObserveOptions())
    a2a = A2aSide(gateway, config, lambda: gateway.config, auth, PolicyGuard(lambda: dispatcher.policy))
    _follow_reloads(gateway, a2a)
    app = StreamableHTTP(dispatcher, auth=auth)
    legacy = LegacySSE(dispatcher).mount(app)
    mcp = _Server(_listener_config(app, config, config.listen.host, config.listen.port, True,
                                   timeout_graceful_shutdown=3, proxy_headers=False,
                                   server_header=False, date_header=False))
    servers = [mcp]
    names = ["mcp"]
    listeners: dict[str, str] = {}
    if config.admin.enabled:
        # The playground's /mcp is the same MCP app, served same-origin on the admin port.
        servers.append(_Server(_listener_config(admin_app(dispatcher, mcp=app, listeners=listeners,
                                                          agents=a2a.status), config,
                                                config.admin.host, config.admin.port, False,
                                                timeout_graceful_shutdown=1)))
        names.append("admin")
    if config.a2a is not None:
        servers.append(_Server(_listener_config(a2a.app, config, config.a2a.listen.host,
                                                config.a2a.listen.port, False, timeout_graceful_shutdown=1)))
        names.append("a2a")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await dispatcher.start()
    if replication is not None:
        await replication.start(dispatcher)
    peers = None
    if os.environ.get(WORKER_DIR) and dispatcher.observer is not None:
        # A worker of `run --workers N`: a scrape, wherever it lands, adds up all workers.
        peers = WorkerMetrics(os.environ[WORKER_DIR], dispatcher.observer.metrics.render)
        try:
            await peers.start()
            dispatcher.observer.metrics.peers = peers
        except OSError as exc:  # e.g. a $TMPDIR too long for a Unix socket path
            log.warning("metrics: this worker's numbers are not shared with the other workers (%s)", exc)
            peers = None
    if path is not None:
        watcher = ConfigFileSource(path, gateway.reload)
        gateway.config_status = watcher.status
        gateway.add_source("file", watcher.run)
    # A worker of `run --workers N` serves its own SO_REUSEPORT sockets.
    given = [[sock] if (sock := (sockets or {}).get(name)) is not None else None for name in names]
    tasks = [asyncio.create_task(s.serve(sockets=given[i]), name=f"uvicorn-{i}") for i, s in enumerate(servers)]
    try:
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                for t in tasks:
                    if t.done() and t.exception():
                        raise t.exception()  # type: ignore[misc]
                raise SystemExit("mcpmux: a listener failed to start (port in use?)")
            await asyncio.sleep(0.01)
        base_url = f"http://{_host(config.listen.host)}:{_bound_port(mcp)}"
        mcp_url, sse_url = f"{base_url}/mcp", f"{base_url}{legacy.sse_path}"
        admin_url = (
            f"http://{_host(config.admin.host)}:{_bound_port(servers[1])}" if config.admin.enabled else None
        )
        a2a_url = (
            f"http://{_host(config.a2a.listen.host)}:{_bound_port(servers[names.index('a2a')])}"
            if config.a2a is not None else None
        )
        listeners.update({"mcp": mcp_url, "sse": sse_url, **({"admin": admin_url} if admin_url else {}),
                          **({"a2a": a2a_url} if a2a_url else {})})
        # Give targets a moment so the first lines show real states; readiness is async anyway.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gateway.wait_ready(), 3)
        print(f"mcpmux {__version__} ({source})", flush=True)
        print(f"  MCP:   {mcp_url}", flush=True)
        print(f"  SSE:   {sse_url}   (legacy HTTP+SSE clients)", flush=True)
        print(f"  hot path: {native.describe()}", flush=True)
        if admin_url:
            print(f"  admin: {admin_url}/   (UI and playground; JSON at /api/targets, /metrics)", flush=True)
        if a2a_url:
            print(f"  A2A:   {a2a_url}/{{agent}}/   (agents: {', '.join(a2a.agents().agents) or 'none'})", flush=True)
        for target in gateway.targets.values():
            extra = f" ({target.last_error})" if target.last_error else ""
            kind = f"url, {target.transport or 'probing'}" if target.kind == "url" else target.kind
            print(f"  target {target.name} [{kind}]: {target.state}{extra}", flush=True)
        if ready_file:
            _write_ready_file(ready_file, {"mcp": mcp_url, "sse": sse_url, "admin": admin_url, "a2a": a2a_url,
                                           "pid": os.getpid()})
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
    finally:
        log.info("shutting down")
        for s in servers:
            s.should_exit = True
        if peers is not None:
            await peers.aclose()
        legacy.close_all()
        if replication is not None:
            replication.detach_all()  # its sessions go on at the other replicas
        await dispatcher.aclose()
        if replication is not None:
            await replication.aclose()
        await asyncio.gather(*tasks, return_exceptions=True)
        await a2a.aclose()
        if auth is not None:
            await auth.aclose()
        if credentials is not None:
            await credentials.aclose()
        if dispatcher.observer is not None:
            dispatcher.observer.close()
        tracing.shutdown()


async def serve_stdio(config: GatewayConfig, path: str | None, ready_file: str | None = None,
                      observe: ObserveOptions | None = None) -> None:
    """``mcpmux stdio``: the whole gateway as one MCP server on stdin/stdout.

    No HTTP listener: ``listen`` is ignored, and the admin listener runs only when the
    config says ``admin: {enabled: true}`` in so many words (a desktop client may start
    several of these; a default port would collide). Ends on stdin EOF or SIGTERM,
    closing every target (children get SIGTERM, then SIGKILL).
    """
    from .listener.stdio import StdioFront, open_stdio, take_stdout

    out = take_stdout()  # first: from here on a stray print cannot corrupt the protocol
    gateway = Gateway(config)
    if path is None:
        gateway.config_source = "demo"
    if config.auth is not None or config.authorization is not None:
        log.warning("mcpmux stdio is a local pipe: 'auth' and 'authorization' (rules, rate "
                    "limits) do not apply to it; whoever starts the process has full access")
    dispatcher = Dispatcher(gateway)
    _observe(dispatcher, observe or ObserveOptions())
    servers: list[_Server] = []
    listeners: dict[str, str] = {}
    if "enabled" in config.admin.model_fields_set and config.admin.enabled:
        servers.append(_Server(_listener_config(admin_app(dispatcher, listeners=listeners), config, config.admin.host, config.admin.port,
                                                False, log_config=None, timeout_graceful_shutdown=1)))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    reader, write = await open_stdio(out)
    await dispatcher.start()
    if path is not None:
        watcher = ConfigFileSource(path, gateway.reload)
        gateway.config_status = watcher.status
        gateway.add_source("file", watcher.run)
    tasks = [asyncio.create_task(s.serve(), name=f"uvicorn-{i}") for i, s in enumerate(servers)]
    front = StdioFront(dispatcher, reader, write)
    runner = asyncio.create_task(front.run(), name="stdio-front")
    stopper = asyncio.create_task(stop.wait())
    log.info("mcpmux %s (%s): serving MCP on stdin/stdout", __version__, path or "embedded demo")
    try:
        while servers and not all(s.started for s in servers) and not any(t.done() for t in tasks):
            await asyncio.sleep(0.01)
        admin_url = f"http://{_host(config.admin.host)}:{_bound_port(servers[0])}" if servers else None
        if admin_url:
            listeners.update({"stdio": "stdin/stdout", "admin": admin_url})
        if admin_url:
            log.info("admin: %s/api/targets", admin_url)
        if ready_file:
            _write_ready_file(ready_file, {"mcp": None, "admin": admin_url, "pid": os.getpid()})
        await asyncio.wait([runner, stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        log.info("shutting down")
        stopper.cancel()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        for s in servers:
            s.should_exit = True
        await dispatcher.aclose()
        await asyncio.gather(*tasks, return_exceptions=True)
        if dispatcher.observer is not None:
            dispatcher.observer.close()
        tracing.shutdown()
        with contextlib.suppress(OSError):
            out.close()


def _follow_reloads(gateway: Gateway, a2a: A2aSide) -> None:
    """The A2A side hears of reloads too (after the dispatcher's own hook)."""
    before = gateway.on_reload

    def reconfigure(config: GatewayConfig) -> None:
        if before is not None:
            before(config)
        a2a.reload(config)

    gateway.on_reload = reconfigure


@dataclass(frozen=True)
class ObserveOptions:
    """``--no-access-log``, ``--access-log-bodies`` (debug: arguments and results too),
    ``--no-metrics``."""

    access_log: bool = True
    bodies: bool = False
    metrics: bool = True
    log_format: str = "text"


def _observe(dispatcher: Dispatcher, options: ObserveOptions) -> None:
    """Metrics (always: they cost a counter and a histogram per request), the access log,
    and traces when the OTEL_* environment asks for them."""
    traced = tracing.configure()
    if not (options.metrics or options.access_log or traced):
        return  # no per-request hook at all
    dispatcher.observer = Observer(dispatcher.gateway, lambda: len(dispatcher.sessions),
                                   access_log=options.access_log, bodies=options.bodies,
                                   metrics=options.metrics, log_format=options.log_format)


def security(config: GatewayConfig) -> tuple[ResourceServer | None, UpstreamCredentials | None]:
    """What ``auth`` and the targets' per-user credentials need, built once."""
    auth = None
    if config.auth is not None:
        from .policy.auth import JwtAuthenticator

        auth = ResourceServer(config.auth, JwtAuthenticator(config.auth))
    needs = any(t.headers_from_claims or t.token_exchange for t in config.targets)
    # Discovery and reloads may add such targets later: cheap to have, so always with auth.
    credentials = UpstreamCredentials() if (needs or auth is not None) else None
    return auth, credentials


def _policy(config: GatewayConfig, current: Policy | None) -> Policy:
    """Rules and rate limits from ``authorization`` (rebuilt on reload; the CEL library
    is imported only when there are rules)."""
    section = config.authorization
    if section is None or (not section.rules and not section.rate_limits):
        return AllowAll()
    from .policy.authorization import build_policy

    return build_policy(config, current)


def bridge_config(command: list[str], host: str, port: int, name: str | None,
                  admin_port: int | None, timeout: float) -> GatewayConfig:
    """``mcpmux bridge``: a one-target config, no prefix (the same engine as ``run``)."""
    return config_from_dict({
        "listen": {"host": host, "port": port},
        "admin": {"host": host, "port": admin_port or 0, "enabled": admin_port is not None},
        "prefix": "never",
        "targets": [{"name": name or _target_name(command[0]), "timeout": timeout,
                     "stdio": {"command": command[0], "args": command[1:]}}],
    })


def _target_name(command: str) -> str:
    """A DNS-1123 label from the command's file name (``mcp-server-git`` stays itself)."""
    base = re.sub(r"\.(exe|js|mjs|cjs|py|sh)$", "", Path(command).name.lower())
    name = re.sub(r"[^a-z0-9]+", "-", base).strip("-")[:63].strip("-")
    return name or "server"


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


def _setup_logging(level: str, fmt: str = "text") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if fmt == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    # Secrets (${VAR} values, configured headers) are masked in every line written.
    redact.install()


def _observe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=["text", "json"],
                        default=os.environ.get("MCPMUX_LOG_FORMAT", "text"),
                        help="text (default) or json: one JSON object per line, access lines included")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false",
                        help="no access line per request (logger mcpmux.access)")
    parser.add_argument("--no-metrics", dest="metrics", action="store_false",
                        help="no request metrics (target state on /metrics stays)")
    parser.add_argument("--access-log-bodies", action="store_true",
                        help="debug: put each call's arguments and result in its access line")


def _worker_options(args: argparse.Namespace) -> list[str]:
    """The ``run`` options each worker gets from the supervisor (``--workers N``)."""
    options = ["--log-level", args.log_level, "--log-format", args.log_format]
    if not args.access_log:
        options.append("--no-access-log")
    if not args.metrics:
        options.append("--no-metrics")
    if args.access_log_bodies:
        options.append("--access-log-bodies")
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcpmux", description="A multiplexing MCP gateway.")
    parser.add_argument("--version", action="version", version=f"mcpmux {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway")
    run.add_argument("-c", "--config", help="config file (default: ./mcpmux.yaml, else the embedded demo)")
    run.add_argument("--log-level", default=os.environ.get("MCPMUX_LOG_LEVEL", "info"))
    _observe_args(run)
    run.add_argument("--ready-file", help=argparse.SUPPRESS)
    run.add_argument("--workers", type=int, default=1,
                     help="processes serving the same port (N > 1 needs state.redis_url; see docs/scaling.md)")
    run.add_argument("--worker-ports", help=argparse.SUPPRESS)
    std = sub.add_parser("stdio", help="serve the gateway on stdin/stdout (for clients that launch a command)")
    std.add_argument("-c", "--config", help="config file (default: ./mcpmux.yaml, else the embedded demo)")
    std.add_argument("--log-level", default=os.environ.get("MCPMUX_LOG_LEVEL", "info"))
    _observe_args(std)
    std.add_argument("--ready-file", help=argparse.SUPPRESS)
    bridge = sub.add_parser(
        "bridge", help="expose one stdio MCP server over streamable HTTP (/mcp) and legacy SSE (/sse)",
        usage="mcpmux bridge [--host H] [--port P] [--name N] [--admin-port A] -- COMMAND [ARGS...]",
    )
    bridge.add_argument("--host", default="127.0.0.1", help="listen address (0.0.0.0 in a sidecar)")
    bridge.add_argument("--port", type=int, default=8080, help="port of /mcp and /sse (0: any free port)")
    bridge.add_argument("--name", help="the target's name in logs, errors and /api/targets "
                        "(default: from the command)")
    bridge.add_argument("--admin-port", type=int, help="serve /healthz, /readyz, /api/targets on this port "
                        "(same host; default: no admin listener)")
    bridge.add_argument("--timeout", type=float, default=30.0, help="seconds the server may take to start "
                        "and list (default 30)")
    bridge.add_argument("--log-level", default=os.environ.get("MCPMUX_LOG_LEVEL", "info"))
    _observe_args(bridge)
    bridge.add_argument("--ready-file", help=argparse.SUPPRESS)
    bridge.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND", help="the stdio server to run, after --")
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

    _setup_logging(args.log_level, args.log_format)
    observe = ObserveOptions(access_log=args.access_log, bodies=args.access_log_bodies, metrics=args.metrics,
                             log_format=args.log_format)
    bridged: str | None = None
    try:
        if args.command == "bridge":
            argv_ = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            if not argv_:
                parser.error("bridge needs the server's command: mcpmux bridge [options] -- COMMAND [ARGS...]")
            try:
                config = bridge_config(argv_, args.host, args.port, args.name, args.admin_port, args.timeout)
            except ConfigError as exc:
                exc.source = "mcpmux bridge (--name, --host, --port, --admin-port, --timeout)"
                raise
            source, bridged = None, " ".join(argv_)
        else:
            config, source = load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    workers = getattr(args, "workers", 1)
    if args.command == "run" and workers != 1:
        from . import workers as supervisor

        problem = supervisor.check(config, workers)
        if problem is None and source is None:
            problem = "--workers needs a config file (-c FILE): each worker loads it"
        if problem is not None:
            print(f"mcpmux: {problem}", file=sys.stderr)
            return 2
        assert source is not None
        return supervisor.supervise(config, source, workers, _worker_options(args), args.ready_file)
    sockets = None
    if getattr(args, "worker_ports", None):
        from .workers import own_sockets

        sockets = own_sockets(config, args.worker_ports)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        runner = asyncio.run  # type: ignore[assignment]
    try:
        if args.command == "stdio":
            runner(serve_stdio(config, source, args.ready_file, observe))
        else:
            runner(serve(config, source, args.ready_file, bridge=bridged, sockets=sockets, observe=observe))
    except KeyboardInterrupt:
        pass
    return 0
