"""``/metrics`` under ``run --workers N``: every worker's numbers in every scrape.

The workers share the admin port (``SO_REUSEPORT``), so a scrape reaches one of them
at random. Alone, its counters would jump between the workers' values from scrape to
scrape, and Prometheus would read each drop as a counter reset. So each worker also
serves its own registry on a Unix socket in a private directory its supervisor made
(``MCPMUX_WORKER_DIR``, mode 0700), and the worker a scrape reaches reads its
siblings' and adds them up. prometheus-client's multiprocess mode does the same with
mmap'ed values, but only for its own metric objects; mcpmux counts requests in plain
numbers (see ``metrics.py``), so the merge is done here, at scrape time, on the text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

log = logging.getLogger("mcpmux")

#: The directory of the workers' sockets, set by the supervisor for its workers.
ENV = "MCPMUX_WORKER_DIR"
#: Seconds a sibling may take to answer; a worker being restarted is skipped.
SIBLING_TIMEOUT = 2.0
#: Gauges that are not summed: a target is up when every worker reaches it, and is
#: in a state when any worker sees it there.
_NOT_SUMMED: dict[str, Callable[[float, float], float]] = {
    "mcpmux_target_up": min,
    "mcpmux_target_state": max,
}


def merge(texts: list[bytes]) -> bytes:
    """One exposition of several workers' ones: counters and histograms summed, gauges
    summed unless named in ``_NOT_SUMMED``, ``*_created`` the earliest; plus
    ``mcpmux_workers``, how many workers answered this scrape."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for fam in text_string_to_metric_families(text.decode()):
            if fam.name not in families:
                families[fam.name] = fam
                values[fam.name] = {}
            combine: Callable[[float, float], float] = _NOT_SUMMED.get(fam.name, _add) if fam.type == "gauge" else _add
            into = values[fam.name]
            for s in fam.samples:
                key = (s.name, tuple(s.labels.items()))
                old = into.get(key)
                if old is None:
                    into[key] = s.value
                else:
                    into[key] = min(old, s.value) if s.name.endswith("_created") else combine(old, s.value)
    merged: list[Metric] = []
    for name, fam in families.items():
        out = Metric(name, fam.documentation, fam.type, fam.unit)
        for (sample, labels), value in values[name].items():
            out.add_sample(sample, dict(labels), value)
        merged.append(out)
    merged.append(GaugeMetricFamily("mcpmux_workers", "Worker processes whose numbers this scrape adds up",
                                    value=float(len(texts))))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(merged))
    return generate_latest(registry)


def _add(a: float, b: float) -> float:
    return a + b


class _Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._metrics


class WorkerMetrics:
    """This worker's side: its socket (what siblings read) and the merged scrape."""

    def __init__(self, directory: str | Path, render: Callable[[], bytes], name: str | None = None) -> None:
        self.dir = Path(directory)
        self.render = render
        self.path = self.dir / f"{name or os.getpid()}.sock"
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        self.path.chmod(0o600)

    async def _serve(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(self.render())
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.path.unlink(missing_ok=True)

    async def render_all(self) -> bytes:
        """This worker's numbers and every live sibling's, added up."""
        siblings = [p for p in self.dir.glob("*.sock") if p != self.path]
        texts = [self.render(), *[t for t in await asyncio.gather(*map(self._read, siblings)) if t is not None]]
        return merge(texts)

    async def _read(self, path: Path) -> bytes | None:
        try:
            async with asyncio.timeout(SIBLING_TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(str(path))
                try:
                    return await reader.read()
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:
            # A worker that exited (its socket left behind) or is starting again.
            log.debug("metrics: worker socket %s not read: %r", path.name, exc)
            return None
