"""Virtual servers: named subsets of the merged catalog, each its own endpoint.

A virtual server is a filter over *exposed* names (what clients see, prefix and
all), so ``k8s_*`` means the same thing in the config as in a client's list. It
is resolved from the endpoint's path on every request and carried in the
``RequestContext``; the policy's ``visible`` and ``authorize`` steps apply it
(``policy/servers.py``), so there is one request path for every endpoint.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from ..config import ServerConfig
from ..protocol import Kind


def _compile(globs: list[str]) -> re.Pattern[str] | None:
    """One regex for a list of globs (case-sensitive: names are). None matches nothing."""
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))


@dataclass(frozen=True)
class VirtualServer:
    """What one ``servers:`` entry admits. Compiled once per config load."""

    name: str
    search: bool
    config: ServerConfig
    _tools: re.Pattern[str] | None
    _prompts: re.Pattern[str] | None
    _resources: re.Pattern[str] | None

    @classmethod
    def of(cls, config: ServerConfig) -> VirtualServer:
        return cls(config.name, config.search, config, _compile(config.tools),
                   _compile(config.prompts), _compile(config.resources))

    def admits(self, kind: Kind, exposed: str | None) -> bool:
        """Is the item a client knows as ``exposed`` part of this server?"""
        if exposed is None:
            return False
        pattern = (self._tools if kind == "tools" else self._prompts if kind == "prompts"
                   else self._resources)
        return pattern is not None and pattern.match(exposed) is not None


def build_servers(configs: list[ServerConfig]) -> dict[str, VirtualServer]:
    return {c.name: VirtualServer.of(c) for c in configs}
