"""Upstream connections: one MCP session to one target, over some transport.

The multiplexer talks to every kind through ``UpstreamSession``; the kinds
differ only in how bytes move (``http``: streamable HTTP, ``sse``: legacy
HTTP+SSE, ``stdio``: a supervised child process).
"""

from .base import CallSink, UpstreamError, UpstreamSession

__all__ = ["CallSink", "UpstreamError", "UpstreamSession"]
