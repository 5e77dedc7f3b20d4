"""The watched config file: a valid edit is applied live, an invalid one changes nothing.

Uses ``watchfiles`` (inotify, already a uvicorn dependency) on the file's
directory, so editors that replace the file and Kubernetes ConfigMaps that swap
a ``..data`` symlink are both seen. Only events about the file itself (its name,
whatever the editor did to put it there) and ConfigMap's ``..``-entries count:
with the gateway's log file in the same directory, every log line was an event,
and watchfiles logs each event batch ("1 change detected") -- the watcher fed
itself about ten times a second forever. Every relevant event re-reads the file;
the content hash decides whether anything changed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import watchfiles

from ..config import ConfigError, GatewayConfig, load_config

log = logging.getLogger("mcpmux.discovery.file")


class ConfigFileSource:
    def __init__(self, path: str | Path, on_config: Callable[[GatewayConfig], Awaitable[None]]) -> None:
        self.path = Path(path)
        self.on_config = on_config
        self.status: dict[str, Any] = {
            "path": str(self.path),
            "valid": True,
            "errors": [],
            "appliedAt": time.time(),
            "lastCheckedAt": time.time(),
        }
        self._digest = self._read_digest()
        self._names = {self.path.name}

    def _read_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def relevant(self, _change: watchfiles.Change, path: str) -> bool:
        """Is an event in the watched directory about the config file? Its own name (a
        write, or a rename into place), the name it resolves to, or a ConfigMap's
        ``..data``/``..2024_...`` swap; never the log file or editors' temporaries."""
        name = Path(path).name
        return name in self._names or name.startswith("..")

    async def run(self) -> None:
        # watchfiles logs every filtered batch at debug level ("all changes filtered
        # out"): with the log beside the config that is the same loop, one level down.
        wlog = logging.getLogger("watchfiles.main")
        if wlog.getEffectiveLevel() < logging.INFO:
            wlog.setLevel(logging.INFO)
        directory = self.path.absolute().parent
        resolved = self.path.resolve()
        self._names = {self.path.name, resolved.name}
        # Not recursive: the file itself, editors' rename-into-place and a ConfigMap's
        # `..data` symlink swap all happen in this directory.
        dirs = {directory, resolved.parent}
        async for _ in watchfiles.awatch(*dirs, debounce=200, step=50, recursive=False,
                                         watch_filter=self.relevant):
            await self.check()

    async def check(self) -> None:
        """Re-read the file; apply it if it changed and is valid."""
        self.status["lastCheckedAt"] = time.time()
        digest = self._read_digest()
        if digest is None or digest == self._digest:
            return
        self._digest = digest
        try:
            config = load_config(self.path)
        except ConfigError as exc:
            self.status.update(valid=False, errors=list(exc.errors))
            log.error("config %s: edit rejected, still running the last good config:\n%s", self.path, exc)
            return
        self.status.update(valid=True, errors=[], appliedAt=time.time())
        log.info("config %s: changed; applying", self.path)
        await self.on_config(config)
