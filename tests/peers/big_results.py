"""A stdio MCP server whose tools return results as large as asked, for the result
size limit (``limits.max_result_bytes``).

* ``text``: ``size`` bytes of numbered ASCII lines; ``structured``: also a
  ``structuredContent`` object;
* ``picture``: ``before`` bytes of text, a PNG image of ``image`` base64 bytes, then
  ``after`` bytes of text.
"""

from __future__ import annotations

from typing import Any

from mcpmux.demo.stdio_server import Ctx, StdioServer

server = StdioServer("big-results", "1.0.0")
NUMBER = {"type": "integer", "minimum": 0}


def lines(size: int, tag: str = "line") -> str:
    """Deterministic text of exactly ``size`` bytes (a test can rebuild it)."""
    out, n, total = [], 0, 0
    while total < size:
        out.append(f"{tag} {n:07d} of the big result\n")
        total += len(out[-1])
        n += 1
    return "".join(out)[:size]


@server.tool("text", "a text result of `size` bytes", {
    "type": "object", "properties": {"size": NUMBER, "structured": {"type": "boolean"}}, "required": ["size"]})
async def text(args: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    body = lines(int(args["size"]))
    res: dict[str, Any] = {"content": [{"type": "text", "text": body}], "isError": False}
    if args.get("structured"):
        res["structuredContent"] = {"length": len(body), "first": body[:40]}
    return res


@server.tool("picture", "text, an image, text", {
    "type": "object", "properties": {"before": NUMBER, "image": NUMBER, "after": NUMBER}})
async def picture(args: dict[str, Any], ctx: Ctx) -> dict[str, Any]:
    data = ("iVBORw0KGgo" + "A" * int(args.get("image", 0)))[: int(args.get("image", 0))]
    return {"content": [
        {"type": "text", "text": lines(int(args.get("before", 0)), "before")},
        {"type": "image", "mimeType": "image/png", "data": data},
        {"type": "text", "text": lines(int(args.get("after", 0)), "after")},
    ], "isError": False}


if __name__ == "__main__":
    server.run()
