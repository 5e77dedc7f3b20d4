"""Tool arguments to an HTTP request, per the operation's parameter styles.

Pure: :func:`build_request` returns method, URL (already percent-encoded: send it
as is), headers and body bytes; bad arguments raise :class:`ArgumentError`, whose
message is shown to the model so it can correct the call.

Serialization follows OpenAPI's ``style``/``explode`` (RFC 6570 underneath):

==============  ==========================  ===================================
style           array ``[3, 4]``            object ``{"a": 1, "b": 2}``
==============  ==========================  ===================================
simple          ``3,4``                     ``a,1,b,2`` / explode ``a=1,b=2``
label           ``.3,4`` / explode ``.3.4`` ``.a,1,b,2`` / explode ``.a=1.b=2``
matrix          ``;id=3,4`` / ``;id=3;id=4``  ``;id=a,1,b,2`` / ``;a=1;b=2``
form            ``id=3,4`` / ``id=3&id=4``  ``id=a,1,b,2`` / ``a=1&b=2``
spaceDelimited  ``id=3%204``                ``id=a%201%20b%202``
pipeDelimited   ``id=3%7C4``                ``id=a%7C1%7Cb%7C2``
deepObject      (as form)                   ``id%5Ba%5D=1&id%5Bb%5D=2``
==============  ==========================  ===================================

Booleans are ``true``/``false`` and ``null`` is empty, as in JSON; nested values
that a style cannot express are sent as JSON text.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

import orjson

from .convert import Operation, Param

__all__ = ["ArgumentError", "HttpRequest", "build_request", "pick_base_url"]

#: RFC 3986 reserved characters, left as they are for ``allowReserved`` parameters.
RESERVED = ":/?#[]@!$&'()*+,;="
_TEMPLATE = re.compile(r"\{([^{}]+)\}")


class ArgumentError(Exception):
    """The tool arguments do not fit the operation."""


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    url: str  # percent-encoded
    headers: dict[str, str]
    body: bytes | None = None


def pick_base_url(servers: list[str] | tuple[str, ...], spec_url: str | None) -> str | None:
    """The first server URL that is absolute, or that resolves against the spec's URL."""
    for server in servers:
        parts = urlsplit(server)
        if parts.scheme in ("http", "https") and parts.netloc:
            return server
        if spec_url is not None:
            joined = urljoin(spec_url, server)
            if urlsplit(joined).scheme in ("http", "https"):
                return joined
        elif server.startswith("//"):
            return "https:" + server
    return None


# ------------------------------------------------------------------------ values


def _text(value: Any) -> str:
    """A scalar as it appears in a URL or header (JSON spelling for true/false/null)."""
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return _dumps(value).decode()


def _dumps(value: Any) -> bytes:
    """JSON bytes; the standard library takes what orjson refuses (ints over 64 bits)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _enc(value: Any, reserved: bool = False) -> str:
    return quote(_text(value), safe=RESERVED if reserved else "")


def _pairs(value: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(str(k), v) for k, v in value.items() if v is not None]


# ------------------------------------------------------------------------ path


def _path_value(p: Param, value: Any) -> str:
    if isinstance(value, list):
        items = [_enc(v) for v in value]
        if p.style == "label":
            return "." + ("." if p.explode else ",").join(items)
        if p.style == "matrix":
            if p.explode:
                return "".join(f";{p.name}={v}" for v in items)
            return f";{p.name}=" + ",".join(items)
        return ",".join(items)
    if isinstance(value, dict):
        pairs = _pairs(value)
        if p.style == "matrix" and p.explode:
            return "".join(f";{_enc(k)}={_enc(v)}" for k, v in pairs)
        if p.explode:
            joined = ("." if p.style == "label" else ",").join(
                f"{_enc(k)}={_enc(v)}" for k, v in pairs
            )
        else:
            joined = ",".join(f"{_enc(k)},{_enc(v)}" for k, v in pairs)
        if p.style == "label":
            return "." + joined
        if p.style == "matrix":
            return f";{p.name}={joined}"
        return joined
    text = _enc(value)
    if text and set(text) == {"."}:  # "." and ".." would move up the path
        text = text.replace(".", "%2E")
    if p.style == "label":
        return "." + text
    if p.style == "matrix":
        return f";{p.name}" + (f"={text}" if text else "")
    return text


# ------------------------------------------------------------------------ query


def _query_items(p: Param, value: Any) -> list[str]:
    """``key=value`` pieces (encoded) for one query parameter."""
    key = _enc(p.name)
    reserved = p.allow_reserved
    if p.as_json:
        return [f"{key}={quote(_dumps(value).decode(), safe='')}"]
    if isinstance(value, list):
        if not value:
            return []
        sep = {"spaceDelimited": "%20", "pipeDelimited": "%7C", "tabDelimited": "%09"}.get(p.style)
        if sep is not None and not p.explode:
            return [f"{key}=" + sep.join(_enc(v, reserved) for v in value)]
        if p.explode:
            return [f"{key}={_enc(v, reserved)}" for v in value]
        return [f"{key}=" + ",".join(_enc(v, reserved) for v in value)]
    if isinstance(value, dict):
        pairs = _pairs(value)
        if p.style == "deepObject":
            return _deep(p.name, value, reserved)
        sep = {"spaceDelimited": "%20", "pipeDelimited": "%7C", "tabDelimited": "%09"}.get(p.style)
        if p.explode and sep is None:
            return [f"{_enc(k)}={_enc(v, reserved)}" for k, v in pairs]
        flat = [piece for k, v in pairs for piece in (_enc(k), _enc(v, reserved))]
        return [f"{key}=" + (sep or ",").join(flat)]
    return [f"{key}={_enc(value, reserved)}"]


def _deep(prefix: str, value: Any, reserved: bool) -> list[str]:
    out: list[str] = []
    if isinstance(value, dict):
        for k, v in _pairs(value):
            out.extend(_deep(f"{prefix}[{k}]", v, reserved))
    elif isinstance(value, list):
        for v in value:
            out.extend(
                _deep(prefix, v, reserved)
                if isinstance(v, dict)
                else [f"{_enc(prefix)}={_enc(v, reserved)}"]
            )
    else:
        out.append(f"{_enc(prefix)}={_enc(value, reserved)}")
    return out


# ------------------------------------------------------------------------ headers


def _header_value(p: Param, value: Any) -> str:
    if p.as_json:
        text = _dumps(value).decode()
    elif isinstance(value, list):
        text = ",".join(_text(v) for v in value)
    elif isinstance(value, dict):
        sep = "=" if p.explode else ","
        text = ",".join(f"{k}{sep}{_text(v)}" for k, v in _pairs(value))
    else:
        text = _text(value)
    if "\r" in text or "\n" in text:
        raise ArgumentError(f"header parameter '{p.name}' must not contain line breaks")
    return text


def _cookie_value(p: Param, value: Any) -> str:
    if p.as_json:
        return f"{p.name}={quote(_dumps(value).decode(), safe='')}"
    if isinstance(value, list):
        return f"{p.name}=" + ",".join(_enc(v) for v in value)
    if isinstance(value, dict):
        return f"{p.name}=" + ",".join(f"{_enc(k)},{_enc(v)}" for k, v in _pairs(value))
    return f"{p.name}={_enc(value)}"


# ------------------------------------------------------------------------ bodies


def _form_body(value: Any) -> bytes:
    if not isinstance(value, dict):
        raise ArgumentError("'body' must be an object (it is sent as a form)")
    pairs: list[tuple[str, str]] = []
    for k, v in _pairs(value):
        if isinstance(v, list):
            pairs.extend((k, _text(item)) for item in v)
        else:
            pairs.append((k, _text(v)))
    return urlencode(pairs).encode()


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ArgumentError(f"{what} must be a base64-encoded string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ArgumentError(f"{what} is not valid base64") from None


def _multipart(value: Any, files: frozenset[str]) -> tuple[bytes, str]:
    if not isinstance(value, dict):
        raise ArgumentError("'body' must be an object (it is sent as multipart/form-data)")
    boundary = f"mcpmux-{uuid.uuid4().hex}"
    out = bytearray()
    for k, v in _pairs(value):
        for item in v if isinstance(v, list) and k not in files else [v]:
            name = k.replace('"', "%22").replace("\r", "").replace("\n", "")
            out += f"--{boundary}\r\n".encode()
            if k in files:
                data = _b64(item, f"'body.{k}'")
                out += (
                    f'Content-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
                    "Content-Type: application/octet-stream\r\n\r\n"
                ).encode()
            elif isinstance(item, dict | list):
                data = _dumps(item)
                out += (
                    f'Content-Disposition: form-data; name="{name}"\r\n'
                    "Content-Type: application/json\r\n\r\n"
                ).encode()
            else:
                data = _text(item).encode()
                out += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            out += data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


# ------------------------------------------------------------------------ request


def build_request(
    op: Operation,
    arguments: Mapping[str, Any] | None,
    base_url: str,
    headers: Mapping[str, str] | None = None,
) -> HttpRequest:
    """The HTTP request for calling ``op`` with ``arguments``; ``headers`` (from the
    target's config) are added last and win."""
    args = dict(arguments or {})
    known = {p.arg: p for p in op.params}
    expected = [*known, *([op.body.arg] if op.body else [])]
    unknown = [a for a in args if a not in known and not (op.body and a == op.body.arg)]
    if unknown:
        listed = ", ".join(f"'{a}'" for a in unknown)
        raise ArgumentError(
            f"unknown argument{'s' if len(unknown) > 1 else ''} {listed}; "
            f"expected {', '.join(expected) if expected else 'none'}"
        )
    missing = [p.arg for p in op.params if p.required and args.get(p.arg) is None]
    if op.body and op.body.required and args.get(op.body.arg) is None:
        missing.append(op.body.arg)
    if missing:
        listed = ", ".join(f"'{a}'" for a in missing)
        raise ArgumentError(f"missing required argument{'s' if len(missing) > 1 else ''} {listed}")

    path_values: dict[str, str] = {}
    query: list[str] = []
    out_headers: dict[str, str] = {}
    cookies: list[str] = []
    for p in op.params:
        value = args.get(p.arg)
        if value is None:
            continue
        if p.location == "path":
            path_values[p.name] = _path_value(p, value)
        elif p.location == "query":
            query.extend(_query_items(p, value))
        elif p.location == "header":
            out_headers[p.name] = _header_value(p, value)
        else:
            cookies.append(_cookie_value(p, value))

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in path_values:
            raise ArgumentError(f"missing path parameter '{name}'")
        return path_values[name]

    path = _TEMPLATE.sub(fill, op.path)
    url = base_url.rstrip("/") + path
    if query:
        url += ("&" if "?" in url else "?") + "&".join(query)

    body: bytes | None = None
    if op.body is not None and args.get(op.body.arg) is not None:
        value = args[op.body.arg]
        enc = op.body.encoding
        content_type = op.body.media_type
        if enc == "json":
            if op.body.media_type.strip() in ("*/*", "application/*"):
                content_type = "application/json"
            body = _dumps(value)
        elif enc == "form":
            body = _form_body(value)
        elif enc == "multipart":
            body, content_type = _multipart(value, op.body.files)
        elif enc == "text":
            if not isinstance(value, str):
                raise ArgumentError("'body' must be a string")
            body = value.encode()
        else:
            body = _b64(value, "'body'")
        out_headers["Content-Type"] = content_type

    final: dict[str, str] = {}
    if op.accept:
        final["Accept"] = op.accept
    final.update(out_headers)
    extra = dict(headers or {})
    if cookies:
        fixed_cookie = next((v for k, v in extra.items() if k.lower() == "cookie"), None)
        extra = {k: v for k, v in extra.items() if k.lower() != "cookie"}
        final["Cookie"] = "; ".join([*([fixed_cookie] if fixed_cookie else []), *cookies])
    lowered = {k.lower() for k in extra}
    final = {k: v for k, v in final.items() if k.lower() not in lowered}
    final.update(extra)
    return HttpRequest(op.method, url, final, body)
