"""Demo server "mcpmux-demo-notes": mutable state, resource templates, prompts, list_changed.

Run with ``python -m mcpmux.demo.notes``; notes live in memory for the process lifetime.
"""

from __future__ import annotations

from urllib.parse import quote

import orjson

from mcpmux.demo.stdio_server import Ctx, Json, RpcError, StdioServer, ToolError, text_result

server = StdioServer("mcpmux-demo-notes", resources_list_changed=True)
notes: dict[str, str] = {}


def _note_uri(title: str) -> str:
    return "notes://note/" + quote(title, safe="")


def _title(args: Json) -> str:
    title = args.get("title")
    if not isinstance(title, str) or not title:
        raise ToolError("'title' must be a non-empty string")
    return title


server.extra_resources = lambda: [
    {"uri": _note_uri(t), "name": t, "mimeType": "text/plain", "description": f"Note {t!r}"}
    for t in notes
]

_TITLE_ONLY = {
    "type": "object",
    "properties": {"title": {"type": "string"}},
    "required": ["title"],
}


@server.tool(
    "add_note",
    "Create or replace a note.",
    {
        "type": "object",
        "properties": {"title": {"type": "string"}, "body": {"type": "string"}},
        "required": ["title", "body"],
    },
)
async def add_note(args: Json, ctx: Ctx) -> Json:
    title, body = _title(args), args["body"]
    if not isinstance(body, str):
        raise ToolError("'body' must be a string")
    is_new = title not in notes
    notes[title] = body
    await ctx.server.log("info", f"saved note {title!r}")
    if is_new:  # the resource list only changes when a note appears
        await ctx.server.notify("notifications/resources/list_changed")
    return text_result(f"saved note {title!r}", {"title": title, "uri": _note_uri(title)})


@server.tool(
    "list_notes",
    "List note titles.",
    {"type": "object", "properties": {}},
    annotations={"readOnlyHint": True},
)
async def list_notes(args: Json, ctx: Ctx) -> Json:
    titles = list(notes)
    return text_result("\n".join(titles) if titles else "(no notes)", {"titles": titles})


@server.tool("get_note", "Return a note's body.", _TITLE_ONLY, annotations={"readOnlyHint": True})
async def get_note(args: Json, ctx: Ctx) -> Json:
    title = _title(args)
    if title not in notes:
        raise ToolError(f"no note titled {title!r}")
    return text_result(notes[title])


@server.resource("notes://all", "all notes", "application/json", "Every note as a JSON object.")
async def all_notes() -> str:
    return orjson.dumps(notes).decode()


@server.template("notes://note/{title}", "note", "text/plain", "One note's body, by title.")
async def one_note(title: str) -> str | None:
    return notes.get(title)


@server.prompt(
    "summarize",
    "Ask the model to summarize a note.",
    [{"name": "title", "description": "Title of the note", "required": True}],
)
async def summarize(args: Json) -> Json:
    title = args["title"]
    if title not in notes:
        raise RpcError(-32602, f"no note titled {title!r}")
    text = f"Summarize this note titled {title!r}:\n\n{notes[title]}"
    return {
        "description": f"Summarize note {title!r}",
        "messages": [{"role": "user", "content": {"type": "text", "text": text}}],
    }


def main() -> None:
    server.run()


if __name__ == "__main__":
    main()
