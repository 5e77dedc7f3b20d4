"""Agent cards: every interface URL that leads to the agent is made to lead to the
gateway, so a client that resolved the card through the gateway stays on it."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlsplit

#: Where an agent publishes its card (A2A 0.3 and 1.0).
CARD_PATH = "/.well-known/agent-card.json"

#: Bindings the gateway relays (gRPC is not HTTP/1 and is left out of rewritten cards).
_RELAYED = {"JSONRPC", "HTTP+JSON", "REST", ""}


def relative_path(url: str, agent_url: str) -> str:
    """The part of ``url`` below the agent's base path (``""`` for the base itself).

    The host is not compared: an interface on the agent's card is the agent's, even
    when it names itself differently (``localhost``, a pod address) than the gateway
    reaches it. A path outside the base path is kept whole."""
    path = urlsplit(url).path
    base = urlsplit(agent_url).path.rstrip("/")
    if base and (path == base or path.startswith(base + "/")):
        path = path[len(base):]
    return path.lstrip("/")


def rewrite_card(card: dict[str, Any], agent_url: str, public_url: str) -> dict[str, Any]:
    """A copy of ``card`` whose interface URLs point at ``public_url`` (the agent's path
    on the gateway): ``supportedInterfaces[].url`` (1.0), top-level ``url`` and
    ``additionalInterfaces[].url`` (0.3). Interfaces with a binding the gateway cannot
    relay (gRPC) are dropped."""
    out = copy.deepcopy(card)
    base = public_url.rstrip("/")

    def moved(url: Any) -> Any:
        if not isinstance(url, str) or not url:
            return url
        rest = relative_path(url, agent_url)
        return f"{base}/{rest}" if rest else base

    for key, binding in (("supportedInterfaces", "protocolBinding"), ("additionalInterfaces", "transport")):
        found = out.get(key)
        if not isinstance(found, list):
            continue
        kept = []
        for item in found:
            if not isinstance(item, dict):
                continue
            if str(item.get(binding, "")).upper() not in _RELAYED:
                continue
            kept.append({**item, "url": moved(item.get("url"))})
        out[key] = kept
    if "url" in out:
        out["url"] = moved(out["url"])
        if str(out.get("preferredTransport", "")).upper() not in _RELAYED:
            out["preferredTransport"] = "JSONRPC"
    return out


def jsonrpc_path(card: dict[str, Any], agent_url: str) -> str:
    """The JSON-RPC endpoint's path below the agent's base URL, from its card."""
    for item in card.get("supportedInterfaces") or ():
        if isinstance(item, dict) and str(item.get("protocolBinding", "")).upper() == "JSONRPC":
            return relative_path(str(item.get("url", "")), agent_url)
    url = card.get("url")
    if isinstance(url, str) and str(card.get("preferredTransport", "JSONRPC")).upper() == "JSONRPC":
        return relative_path(url, agent_url)
    return ""


def skills_text(card: dict[str, Any]) -> str:
    """The card's skills as lines for a tool description."""
    lines = []
    for skill in card.get("skills") or ():
        if not isinstance(skill, dict):
            continue
        name = skill.get("name") or skill.get("id") or "skill"
        desc = skill.get("description") or ""
        lines.append(f"- {name}: {desc}" if desc else f"- {name}")
    return "\n".join(lines)
