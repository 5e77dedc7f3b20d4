"""What a request carries past its listener: who is calling, how, and in which session."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .era import Envelope
from .multiplexer.servers import VirtualServer
from .session import ClientSession, Emit

Transport = Literal["http", "sse", "stdio"]


def owner_key(principal: Any) -> str | None:
    """The caller's stable key (what owns a session), None without authentication.

    None is tested first: ``getattr(None, "key", None)`` builds and drops an
    AttributeError, a measurable part of an unauthenticated call."""
    return None if principal is None else getattr(principal, "key", None)


@dataclass(slots=True, init=False)
class RequestContext:
    """Built by every listener for every message and handed to the dispatcher.

    ``principal`` is the authenticated caller (None while authentication is off);
    ``envelope`` the validated 2026 ``_meta`` of a stateless request; ``emit``
    where what the target sends during the request goes (its SSE stream, the
    legacy stream, stdout), None for the session's GET stream; ``server`` the virtual
    server of the endpoint (``/mcp/{name}``), None on the plain one; ``target`` where
    the dispatcher sent it.

    The ``__init__`` is written out: a compiled dataclass keeps the generated one,
    which is interpreted (see :class:`~mcpmux.policy.Action`)."""

    session: ClientSession
    transport: Transport
    headers: Mapping[str, str]
    emit: Emit | None
    principal: Any
    envelope: Envelope | None
    server: VirtualServer | None
    #: The target the dispatcher routed this request to (set once routing and the
    #: policy agreed): metrics and the access log name it without routing again.
    target: str | None
    #: The answer's size as the target sent it, when it went back unchanged but for
    #: its id (the access log's ``bytes``; None: measured when logged).
    size: int | None

    def __init__(self, session: ClientSession, transport: Transport, headers: Mapping[str, str] | None = None,
                 emit: Emit | None = None, principal: Any = None, envelope: Envelope | None = None,
                 server: VirtualServer | None = None) -> None:
        self.session = session
        self.transport = transport
        self.headers = {} if headers is None else headers
        self.emit = emit
        self.principal = principal
        self.envelope = envelope
        self.server = server
        self.target = None
        self.size = None

    @property
    def modern(self) -> bool:
        """A 2026-07-28 (stateless) request."""
        return self.envelope is not None
