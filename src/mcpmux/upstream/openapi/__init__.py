"""OpenAPI targets: a REST API described by an OpenAPI 3.0/3.1 or Swagger 2.0
document, served as MCP tools by the gateway itself (see docs/openapi.md).

* :mod:`.convert`: document to tool definitions and an operation table (pure);
* :mod:`.request`: tool arguments to an HTTP request (pure);
* :mod:`.session`: :class:`OpenApiSession`, the :class:`UpstreamSession` that
  answers MCP and calls the API.
"""

from .convert import Conversion, Operation, SpecError, convert, parse_document
from .request import ArgumentError, HttpRequest, build_request
from .session import OpenApiSession

__all__ = [
    "ArgumentError",
    "Conversion",
    "HttpRequest",
    "OpenApiSession",
    "Operation",
    "SpecError",
    "build_request",
    "convert",
    "parse_document",
]
