"""The watched config file: a valid edit is applied live, an invalid one changes nothing.

Uses ``watchfiles`` (inotify, already a uvicorn dependency) on the file's
directory, so editors that replace the file and Kubernetes ConfigMaps that swap
a ``..data`` symlink are both seen. Every event re-reads the file; the content
hash decides whether anything changed.
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

    def _read_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    async def run(self) -> None:
        directory = self.path.resolve().parent
        # Not recursive: the file itself, editors' rename-into-place and a ConfigMap's
        # `..data` symlink swap all happen in this directory.
        async for _ in watchfiles.awatch(directory, debounce=200, step=50, recursive=False):
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
