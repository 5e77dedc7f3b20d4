"""The modules of the per-call path that ``setup.py`` compiles with mypyc.

A wheel carries every module's source; where a compiler was present at build time,
these also have a compiled twin beside them, which Python imports first. Compiled,
a forwarded call costs about 30 % less CPU (docs/benchmarks.md). The sources are the
same either way: pure Python is the fallback, and what ``pip install -e`` runs. What
code in these modules must respect is in docs/architecture.md ("Compiled modules").

This file is read by ``setup.py`` before the package exists: no imports of mcpmux.
"""

from __future__ import annotations

import importlib
import importlib.machinery

#: Compiled together (one shared library); keep the list in data-path order.
MODULES = (
    "mcpmux.listener.h1",
    "mcpmux.fieldnames",
    "mcpmux.listener.guard",
    "mcpmux.listener.auth",
    "mcpmux.listener.http",
    "mcpmux.listener.streams",
    "mcpmux.listener.modern",
    "mcpmux.era",
    "mcpmux.mrtr",
    "mcpmux.session",
    "mcpmux.dispatch",
    "mcpmux.jsonrpc",
    "mcpmux.sse",
    "mcpmux.upstream.base",
    "mcpmux.upstream.http",
    "mcpmux.upstream.h1",
    "mcpmux.upstream.stdio",
    "mcpmux.jsonlines",
    "mcpmux.context",
    "mcpmux.tasks",
    "mcpmux.results",
    "mcpmux.multiplexer.tasks",
    "mcpmux.policy",
    "mcpmux.policy.auth",
    "mcpmux.policy.authorization",
    "mcpmux.policy.rules",
    "mcpmux.policy.ratelimit",
    "mcpmux.policy.servers",
    "mcpmux.observability.observer",
    "mcpmux.observability.access",
    "mcpmux.observability.metrics",
)


def compiled() -> list[str]:
    """Those of :data:`MODULES` this process imports compiled."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return [name for name in MODULES if (importlib.import_module(name).__file__ or "").endswith(suffixes)]


def describe() -> str:
    """For the startup log: which build of the per-call path runs."""
    done = compiled()
    if len(done) == len(MODULES):
        return f"compiled ({len(done)} modules, mypyc)"
    if not done:
        return "pure Python"
    return f"partly compiled ({len(done)} of {len(MODULES)} modules)"
