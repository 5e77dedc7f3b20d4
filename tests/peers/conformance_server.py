"""Conformance backend: the MCP conformance suite's "everything server", built on the official SDK.

The conformance suite (``@modelcontextprotocol/conformance``) tests a *server* by calling
fixed tool/resource/prompt names and checking the results. This module implements every
fixture its server scenarios ask for, using only the official Python SDK (``mcp`` 2.3.0,
``MCPServer``), so that:

* running the suite directly against it gives the reference pass/fail set, and
* running the same suite through mcpmux (with this as the upstream) shows, check by
  check, what the gateway adds or loses.

Run: ``python conformance_server.py --host 127.0.0.1 --port 0``. The first stdout line is
``LISTENING http://HOST:PORT/mcp`` (flushed) once the socket accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import socket
import sys
import warnings
from itertools import count
from typing import Annotated, Any, Final

import uvicorn
from mcp.server import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import Prompt, UserMessage
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.types import (
    INTERNAL_ERROR,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    CallToolResult,
    Completion,
    CompletionArgument,
    CompletionContext,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    InputRequest,
    InputRequiredResult,
    JSONRPCMessage,
    ListRootsRequest,
    ListRootsResult,
    LoggingLevel,
    PromptReference,
    ResourceTemplateReference,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from pydantic import Field

ToolResult = CallToolResult | InputRequiredResult
PromptResult = list[UserMessage] | InputRequiredResult

# Logging, sampling and roots are "deprecated as of 2026-07-28" in SDK 2.x, but the
# 2025-11-25 scenarios this server exists for still exercise them.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

log = logging.getLogger("conformance_server")

# 1x1 red PNG and a minimal WAV, as in the suite's reference server.
TEST_IMAGE_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
TEST_AUDIO_BASE64 = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="

# SEP-1613/SEP-2106: the suite checks these 2020-12 keywords survive tools/list verbatim.
JSON_SCHEMA_2020_12_INPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

# Elicitation schemas are sent verbatim (not derived from pydantic models) because the
# SEP-1034/SEP-1330 scenarios inspect their exact shape.
ELICITATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"},
    },
    "required": ["username", "email"],
}
SEP1034_DEFAULTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
    "required": [],
}
SEP1330_ENUMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "untitledSingle": {
            "type": "string",
            "description": "Select one option",
            "enum": ["option1", "option2", "option3"],
        },
        "titledSingle": {
            "type": "string",
            "description": "Select one option with titles",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "description": "Select one option (legacy)",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "description": "Select multiple options",
            "minItems": 1,
            "maxItems": 3,
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "description": "Select multiple options with titles",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
    "required": [],
}


class InMemoryEventStore(EventStore):
    """Event store so SSE streams get priming events and can be resumed (SEP-1699 polling)."""

    def __init__(self) -> None:
        self._events: list[tuple[str, int, JSONRPCMessage | None]] = []
        self._ids = count(1)

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        event_id = next(self._ids)
        self._events.append((stream_id, event_id, message))
        return str(event_id)

    async def replay_events_after(
        self, last_event_id: str, send_callback: EventCallback
    ) -> str | None:
        try:
            last = int(last_event_id)
        except ValueError:
            return None
        stream = next((s for s, i, _ in self._events if i == last), None)
        if stream is None:
            return None
        for s, i, message in self._events:
            if s == stream and i > last and message is not None:
                await send_callback(EventMessage(message, str(i)))
        return stream


def _text(text: str, *, is_error: bool = False) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=is_error)


def _object_schema(**props: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": kind} for name, kind in props.items()},
        "required": list(props),
    }


NAME_SCHEMA = _object_schema(name="string")
COLOR_SCHEMA = _object_schema(color="string")
CONFIRM_SCHEMA = _object_schema(ok="boolean")
VALUE_SCHEMA = _object_schema(value="string")
CONTEXT_SCHEMA = _object_schema(context="string")
DELETE_SCHEMA = _object_schema(confirm="boolean")

# SEP-2663 tasks fixtures. This backend does NOT implement the tasks extension (it never
# advertises it, never returns CreateTaskResult, has no tasks/* methods), so the
# "task-supporting" fixtures run as ordinary synchronous tools. The scenarios' long sleeps
# (`seconds: 60`) exist only to keep a *task* in `working` while it is polled or cancelled;
# run synchronously they would just hold the request open, so the sleep is capped.
TASKS_EXTENSION: Final = "io.modelcontextprotocol/tasks"
SLOW_COMPUTE_MAX_SECONDS: Final = 2.0
LOG_LEVELS_EMITTED: Final[tuple[LoggingLevel, ...]] = ("debug", "info", "warning", "error")


def _ask(schema: dict[str, Any], message: str) -> ElicitRequest:
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def _sample(prompt: str) -> CreateMessageRequest:
    message = SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
    return CreateMessageRequest(
        params=CreateMessageRequestParams(messages=[message], max_tokens=100)
    )


def _require_client_capabilities(
    ctx: Context, *, elicitation: bool = False, extensions: tuple[str, ...] = ()
) -> None:
    """Raise -32021 naming whatever the request's declared client capabilities lack.

    ``error.data.requiredCapabilities`` is a ClientCapabilities-shaped object (SEP-2575),
    e.g. ``{"extensions": {"io.modelcontextprotocol/tasks": {}}}``.
    """
    caps = ctx.client_capabilities
    missing: dict[str, Any] = {}
    if elicitation and (caps is None or caps.elicitation is None):
        missing["elicitation"] = {}
    declared = (caps.extensions if caps is not None else None) or {}
    if absent := [ext for ext in extensions if ext not in declared]:
        missing["extensions"] = {ext: {} for ext in absent}
    if missing:
        raise MCPError(
            code=MISSING_REQUIRED_CLIENT_CAPABILITY,
            message=f"This tool requires client capabilities the request did not declare: "
            f"{json.dumps(missing)}",
            data={"requiredCapabilities": missing},
        )


def build_server() -> MCPServer:
    """Create the server with every fixture the conformance server scenarios use."""
    mcp = MCPServer(name="mcpmux-conformance-backend", version="1.0.0")
    subscriptions: set[str] = set()

    # ----- tools -------------------------------------------------------------------
    @mcp.tool()
    def test_simple_text() -> CallToolResult:
        """Tests simple text content response."""
        return _text("This is a simple text response for testing.")

    @mcp.tool()
    def test_image_content() -> CallToolResult:
        """Tests image content response."""
        return CallToolResult(
            content=[ImageContent(type="image", data=TEST_IMAGE_BASE64, mime_type="image/png")]
        )

    @mcp.tool()
    def test_audio_content() -> CallToolResult:
        """Tests audio content response."""
        return CallToolResult(
            content=[AudioContent(type="audio", data=TEST_AUDIO_BASE64, mime_type="audio/wav")]
        )

    @mcp.tool()
    def test_embedded_resource() -> CallToolResult:
        """Tests embedded resource content response."""
        resource = TextResourceContents(
            uri="test://embedded-resource",
            mime_type="text/plain",
            text="This is an embedded resource content.",
        )
        return CallToolResult(content=[EmbeddedResource(type="resource", resource=resource)])

    @mcp.tool()
    def test_multiple_content_types() -> CallToolResult:
        """Tests response with multiple content types (text, image, resource)."""
        resource = TextResourceContents(
            uri="test://mixed-content-resource",
            mime_type="application/json",
            text=json.dumps({"test": "data", "value": 123}),
        )
        return CallToolResult(
            content=[
                TextContent(type="text", text="Multiple content types test:"),
                ImageContent(type="image", data=TEST_IMAGE_BASE64, mime_type="image/png"),
                EmbeddedResource(type="resource", resource=resource),
            ]
        )

    @mcp.tool()
    async def test_tool_with_logging(ctx: Context) -> CallToolResult:
        """Tests tool that emits log messages during execution."""
        await ctx.info("Tool execution started")
        await asyncio.sleep(0.05)
        await ctx.info("Tool processing data")
        await asyncio.sleep(0.05)
        await ctx.info("Tool execution completed")
        return _text("Tool with logging executed successfully")

    @mcp.tool()
    async def test_tool_with_progress(ctx: Context) -> CallToolResult:
        """Tests tool that reports progress notifications."""
        for step in (0, 50, 100):
            if step:
                await asyncio.sleep(0.05)
            await ctx.report_progress(step, 100, f"Completed step {step} of 100")
        meta = (ctx.request_context.params or {}).get("_meta") or {}
        return _text(str(meta.get("progressToken", 0)))

    @mcp.tool()
    def test_error_handling() -> CallToolResult:
        """Tests error response handling."""
        return _text("This tool intentionally returns an error for testing", is_error=True)

    @mcp.tool()
    async def test_reconnection(ctx: Context) -> CallToolResult:
        """Tests SSE polling: closes the response stream mid-call, answers after reconnect (SEP-1699)."""
        await ctx.close_sse_stream()
        await asyncio.sleep(0.1)
        return _text(
            "Reconnection test completed successfully. If you received this, "
            "the client properly reconnected after stream closure."
        )

    @mcp.tool()
    async def test_sampling(prompt: str, ctx: Context) -> CallToolResult:
        """Tests server-initiated sampling (LLM completion request)."""
        try:
            result = await ctx.session.create_message(
                messages=[
                    SamplingMessage(role="user", content=TextContent(type="text", text=prompt))
                ],
                max_tokens=100,
                related_request_id=ctx.request_id,
            )
        except Exception as exc:  # reported in-band, as the suite's reference does
            return _text(f"Sampling not supported or error: {exc}")
        reply = result.content.text if isinstance(result.content, TextContent) else "No response"
        return _text(f"LLM response: {reply}")

    async def _elicit(
        ctx: Context, message: str, schema: dict[str, Any], label: str
    ) -> CallToolResult:
        try:
            result = await ctx.session.elicit_form(
                message, schema, related_request_id=ctx.request_id
            )
        except Exception as exc:
            return _text(f"Elicitation not supported or error: {exc}")
        return _text(f"{label}: action={result.action}, content={json.dumps(result.content or {})}")

    @mcp.tool()
    async def test_elicitation(message: str, ctx: Context) -> CallToolResult:
        """Tests server-initiated elicitation (user input request)."""
        return await _elicit(ctx, message, ELICITATION_SCHEMA, "User response")

    @mcp.tool()
    async def test_elicitation_sep1034_defaults(ctx: Context) -> CallToolResult:
        """Tests elicitation with default values per SEP-1034."""
        return await _elicit(
            ctx,
            "Please review and update the form fields with defaults",
            SEP1034_DEFAULTS_SCHEMA,
            "Elicitation completed",
        )

    @mcp.tool()
    async def test_elicitation_sep1330_enums(ctx: Context) -> CallToolResult:
        """Tests elicitation with enum schema improvements per SEP-1330."""
        return await _elicit(
            ctx,
            "Please select options from the enum fields",
            SEP1330_ENUMS_SCHEMA,
            "Elicitation completed",
        )

    @mcp.tool(name="json_schema_2020_12_tool")
    def json_schema_2020_12_tool(
        name: str | None = None, address: dict[str, Any] | None = None
    ) -> CallToolResult:
        """Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)."""
        args = {k: v for k, v in (("name", name), ("address", address)) if v is not None}
        return _text(f"JSON Schema 2020-12 tool called with: {json.dumps(args)}")

    # MCPServer derives inputSchema from the signature; SEP-1613 needs the raw 2020-12
    # document advertised instead. There is no public override in 2.3.0.
    tool = mcp._tool_manager.get_tool("json_schema_2020_12_tool")
    assert tool is not None
    tool.parameters = JSON_SCHEMA_2020_12_INPUT_SCHEMA

    # ----- 2026-07-28 fixtures (stateless era; run by the alpha suite) ----------------
    @mcp.tool()
    def test_x_mcp_header(
        region: Annotated[
            str,
            Field(
                description="Mirrored into Mcp-Param-Region",
                json_schema_extra={"x-mcp-header": "Region"},
            ),
        ] = "<none>",
    ) -> CallToolResult:
        """Tests SEP-2243 Mcp-Param-* header validation (needs an x-mcp-header parameter)."""
        return _text(f"region={region}")

    @mcp.tool()
    async def test_missing_capability(ctx: Context) -> CallToolResult:
        """Requires the client's sampling capability; rejects with -32021 otherwise (SEP-2575)."""
        caps = ctx.client_capabilities
        if caps is None or caps.sampling is None:
            raise MCPError(
                code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                message="This tool requires the client 'sampling' capability",
                data={"requiredCapabilities": {"sampling": {}}},
            )
        return _text("Client declared sampling capability; proceeding.")

    def _dynamic() -> str:
        """Registered and removed again by the test_trigger_* tools."""
        return "dynamic"

    @mcp.tool()
    async def test_trigger_tool_change(ctx: Context) -> CallToolResult:
        """Mutates the tool list and announces it on subscriptions/listen streams (SEP-2575)."""
        mcp.add_tool(_dynamic, name="test_dynamic_tool")
        mcp.remove_tool("test_dynamic_tool")
        await ctx.notify_tools_changed()
        return _text("tool list changed")

    @mcp.tool()
    async def test_trigger_prompt_change(ctx: Context) -> CallToolResult:
        """Mutates the prompt list and announces it on subscriptions/listen streams (SEP-2575)."""
        mcp.add_prompt(Prompt.from_function(_dynamic, name="test_dynamic_prompt"))
        mcp.remove_prompt("test_dynamic_prompt")
        await ctx.notify_prompts_changed()
        return _text("prompt list changed")

    # SEP-2322 multi-round-trip: tools answer InputRequiredResult until the client
    # retries with inputResponses (and the echoed, SDK-sealed requestState).
    @mcp.tool()
    async def test_input_required_result_elicitation(ctx: Context) -> ToolResult:
        """Tests InputRequiredResult with a single elicitation request."""
        answer = (ctx.input_responses or {}).get("user_name")
        if isinstance(answer, ElicitResult):
            return _text(f"Hello, {(answer.content or {}).get('name', 'stranger')}!")
        return InputRequiredResult(
            input_requests={"user_name": _ask(NAME_SCHEMA, "What is your name?")}
        )

    @mcp.tool()
    async def test_input_required_result_sampling(ctx: Context) -> ToolResult:
        """Tests InputRequiredResult with a single sampling request."""
        answer = (ctx.input_responses or {}).get("capital_question")
        if isinstance(answer, CreateMessageResult):
            text = answer.content.text if isinstance(answer.content, TextContent) else "?"
            return _text(f"Model said: {text}")
        return InputRequiredResult(
            input_requests={"capital_question": _sample("What is the capital of France?")}
        )

    @mcp.tool()
    async def test_input_required_result_list_roots(ctx: Context) -> ToolResult:
        """Tests InputRequiredResult with a single roots/list request."""
        answer = (ctx.input_responses or {}).get("client_roots")
        if isinstance(answer, ListRootsResult):
            return _text(f"Client exposed {len(answer.roots)} root(s).")
        return InputRequiredResult(input_requests={"client_roots": ListRootsRequest()})

    @mcp.tool()
    async def test_input_required_result_request_state(ctx: Context) -> ToolResult:
        """Tests requestState round-tripping in the InputRequiredResult flow."""
        if "confirm" in (ctx.input_responses or {}) and ctx.request_state == "state-nonce":
            return _text("state-ok: confirmation received")
        return InputRequiredResult(
            input_requests={"confirm": _ask(CONFIRM_SCHEMA, "Please confirm")},
            request_state="state-nonce",
        )

    @mcp.tool()
    async def test_input_required_result_multiple_inputs(ctx: Context) -> ToolResult:
        """Tests one InputRequiredResult carrying elicitation, sampling and roots requests."""
        wanted = {"user_name", "greeting", "client_roots"}
        if wanted <= (ctx.input_responses or {}).keys():
            return _text("All inputs received.")
        return InputRequiredResult(
            input_requests={
                "user_name": _ask(NAME_SCHEMA, "What is your name?"),
                "greeting": _sample("Generate a greeting"),
                "client_roots": ListRootsRequest(),
            },
            request_state="multiple-inputs",
        )

    @mcp.tool()
    async def test_input_required_result_multi_round(ctx: Context) -> ToolResult:
        """Tests a three-round InputRequiredResult flow with evolving requestState."""
        state = json.loads(ctx.request_state) if ctx.request_state else {"round": 0}
        responses = ctx.input_responses or {}
        step1, step2 = responses.get("step1"), responses.get("step2")
        if state["round"] == 1 and isinstance(step1, ElicitResult):
            return InputRequiredResult(
                input_requests={
                    "step2": _ask(COLOR_SCHEMA, "Step 2: What is your favorite color?")
                },
                request_state=json.dumps({"round": 2, "name": (step1.content or {}).get("name")}),
            )
        if state["round"] == 2 and isinstance(step2, ElicitResult):
            color = (step2.content or {}).get("color")
            return _text(f"Multi-round complete for {state.get('name')} who likes {color}")
        return InputRequiredResult(
            input_requests={"step1": _ask(NAME_SCHEMA, "Step 1: What is your name?")},
            request_state=json.dumps({"round": 1}),
        )

    @mcp.tool()
    async def test_input_required_result_tampered_state(ctx: Context) -> ToolResult:
        """Tests tamper rejection: the SDK's request-state boundary seals and verifies the state."""
        if ctx.request_state is None:
            return InputRequiredResult(
                input_requests={"confirm": _ask(CONFIRM_SCHEMA, "Please confirm")},
                request_state="tamper-test",
            )
        return _text("integrity-ok: state verified")

    @mcp.tool()
    async def test_input_required_result_capabilities(ctx: Context) -> ToolResult:
        """Tests that inputRequests only use methods the client declared."""
        if ctx.input_responses:
            return _text(f"capabilities-ok: received {','.join(sorted(ctx.input_responses))}")
        caps = ctx.client_capabilities
        requests: dict[str, InputRequest] = {}
        if caps is not None and caps.sampling is not None:
            requests["sample_input"] = _sample("Sample request")
        if caps is not None and caps.elicitation is not None:
            requests["elicit_input"] = _ask(VALUE_SCHEMA, "Elicitation input")
        if not requests:
            return _text("No supported capabilities declared")
        return InputRequiredResult(input_requests=requests, request_state="capability-gated")

    @mcp.prompt(title="Prompt Requiring Input")
    async def test_input_required_result_prompt(ctx: Context) -> PromptResult:
        """Tests InputRequiredResult from prompts/get (SEP-2322 non-tool request)."""
        answer = (ctx.input_responses or {}).get("user_context")
        if isinstance(answer, ElicitResult):
            return [
                UserMessage(f"Use the following context: {(answer.content or {}).get('context')}")
            ]
        return InputRequiredResult(
            input_requests={
                "user_context": _ask(CONTEXT_SCHEMA, "What context should the prompt use?")
            }
        )

    # ----- SEP-2575 diagnostics (server-stateless) ------------------------------------
    @mcp.tool()
    async def test_logging_tool(ctx: Context) -> CallToolResult:
        """Emits notifications/message at debug, info, warning and error, then returns.

        On 2026-07-28 the SDK delivers only the levels at or above the request's
        ``_meta["io.modelcontextprotocol/logLevel"]``, and none when that key is absent.
        """
        for level in LOG_LEVELS_EMITTED:
            await ctx.log(level, f"test_logging_tool {level} message", logger_name="conformance")
        return _text(f"Logged at levels: {', '.join(LOG_LEVELS_EMITTED)}")

    @mcp.tool()
    async def test_streaming_elicitation(ctx: Context) -> ToolResult:
        """Streams progress on the response stream, then asks for input via InputRequiredResult.

        The elicitation travels inside the result (SEP-2322), never as an independent
        elicitation/create request on the stream (SEP-2575). Progress notifications are sent
        only when the request carries a progressToken.
        """
        answer = (ctx.input_responses or {}).get("confirmation")
        if isinstance(answer, ElicitResult):
            content = json.dumps(answer.content or {})
            return _text(
                f"Streaming elicitation complete: action={answer.action}, content={content}"
            )
        _require_client_capabilities(ctx, elicitation=True)
        for step in (1, 2, 3):
            await ctx.report_progress(step, 3, f"Streaming step {step} of 3")
            await asyncio.sleep(0.02)
        return InputRequiredResult(
            input_requests={
                "confirmation": _ask(CONFIRM_SCHEMA, "Streaming done. Confirm to finish?")
            }
        )

    # ----- SEP-2663 tasks fixtures, run synchronously (see TASKS_EXTENSION) ------------
    @mcp.tool()
    def greet(name: str) -> CallToolResult:
        """Sync-only tool: returns a greeting."""
        return _text(f"Hello, {name}!")

    @mcp.tool()
    async def slow_compute(
        ctx: Context,
        seconds: Annotated[float, Field(ge=0, description="How long to compute")] = 0,
        label: str = "",
    ) -> CallToolResult:
        """Task-supporting in the tasks scenarios; here it sleeps synchronously (capped)."""
        duration = min(seconds, SLOW_COMPUTE_MAX_SECONDS)
        elapsed = 0.0
        while elapsed < duration:
            step = min(1.0, duration - elapsed)
            await asyncio.sleep(step)
            elapsed += step
            await ctx.report_progress(elapsed, duration)
        note = (
            f" (requested {seconds:g}s, capped at {SLOW_COMPUTE_MAX_SECONDS:g}s: no task support)"
            if seconds > duration
            else ""
        )
        return _text(f"slow_compute[{label}] computed in {duration:g}s{note}")

    @mcp.tool()
    async def failing_job(ctx: Context) -> CallToolResult:
        """Task support 'required': -32021 unless the client declares the tasks extension.

        Otherwise it runs synchronously and reports a tool execution error after ~1s.
        """
        _require_client_capabilities(ctx, extensions=(TASKS_EXTENSION,))
        await asyncio.sleep(1)
        return _text("failing_job: simulated tool execution error", is_error=True)

    @mcp.tool()
    def protocol_error_job() -> CallToolResult:
        """Fails with a JSON-RPC protocol error (-32603), not an isError tool result."""
        raise MCPError(
            code=INTERNAL_ERROR, message="protocol_error_job: simulated internal failure"
        )

    @mcp.tool()
    async def confirm_delete(filename: str, ctx: Context) -> ToolResult:
        """Asks for one confirmation (InputRequiredResult), then reports the outcome."""
        answer = (ctx.input_responses or {}).get("confirm")
        if isinstance(answer, ElicitResult):
            if answer.action == "accept" and (answer.content or {}).get("confirm") is True:
                return _text(f"Deleted {filename}")
            return _text(f"Kept {filename}: deletion not confirmed (action={answer.action})")
        _require_client_capabilities(ctx, elicitation=True)
        return InputRequiredResult(
            input_requests={"confirm": _ask(DELETE_SCHEMA, f"Delete {filename}?")}
        )

    @mcp.tool()
    async def multi_input(ctx: Context) -> ToolResult:
        """Asks for two inputs at once; a partial answer re-requests only what is missing.

        Answers already given ride in the (SDK-sealed) requestState between rounds.
        """
        asks = {
            "first": (NAME_SCHEMA, "First input: what is your name?"),
            "second": (DELETE_SCHEMA, "Second input: confirm?"),
        }
        state = json.loads(ctx.request_state) if ctx.request_state else {}
        answered: dict[str, Any] = dict(state.get("answered", {}))
        for key, response in (ctx.input_responses or {}).items():
            if key in asks and isinstance(response, ElicitResult):
                answered[key] = {"action": response.action, "content": response.content or {}}
        pending = {key: _ask(*ask) for key, ask in asks.items() if key not in answered}
        if not pending:
            return _text(f"multi_input complete: {json.dumps(answered, sort_keys=True)}")
        _require_client_capabilities(ctx, elicitation=True)
        return InputRequiredResult(
            input_requests=dict(pending), request_state=json.dumps({"answered": answered})
        )

    @mcp.tool()
    async def test_tool_with_task(ctx: Context) -> ToolResult:
        """Task support 'required'; MRTR round for user_name, then a synchronous result.

        (A tasks-capable server would return CreateTaskResult on the final round.)
        """
        _require_client_capabilities(ctx, extensions=(TASKS_EXTENSION,))
        answer = (ctx.input_responses or {}).get("user_name")
        if isinstance(answer, ElicitResult):
            return _text(f"Task complete for {(answer.content or {}).get('name', 'stranger')}")
        _require_client_capabilities(ctx, elicitation=True)
        return InputRequiredResult(
            input_requests={"user_name": _ask(NAME_SCHEMA, "What is your name?")}
        )

    # ----- resources ---------------------------------------------------------------
    @mcp.resource(
        "test://static-text",
        name="static-text",
        title="Static Text Resource",
        description="A static text resource for testing",
        mime_type="text/plain",
    )
    def static_text() -> str:
        return "This is the content of the static text resource."

    @mcp.resource(
        "test://static-binary",
        name="static-binary",
        title="Static Binary Resource",
        description="A static binary resource (image) for testing",
        mime_type="image/png",
    )
    def static_binary() -> bytes:
        return base64.b64decode(TEST_IMAGE_BASE64)

    @mcp.resource(
        "test://template/{id}/data",
        name="template",
        title="Resource Template",
        description="A resource template with parameter substitution",
        mime_type="application/json",
    )
    def template(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @mcp.resource(
        "test://watched-resource",
        name="watched-resource",
        title="Watched Resource",
        description="A resource clients can subscribe to",
        mime_type="text/plain",
    )
    def watched() -> str:
        return "Watched resource content"

    # MCPServer has no public subscribe/setLevel hooks; register them on the low-level
    # server (which also makes the capabilities advertise subscribe/logging).
    lowlevel = mcp._lowlevel_server

    async def subscribe(
        ctx: ServerRequestContext[Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        subscriptions.add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(
        ctx: ServerRequestContext[Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        subscriptions.discard(str(params.uri))
        return EmptyResult()

    async def set_level(
        ctx: ServerRequestContext[Any], params: SetLevelRequestParams
    ) -> EmptyResult:
        log.info("client set log level to %s", params.level)
        return EmptyResult()

    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)

    # ----- prompts -----------------------------------------------------------------
    @mcp.prompt(title="Simple Test Prompt")
    def test_simple_prompt() -> list[UserMessage]:
        """A simple prompt without arguments."""
        return [UserMessage("This is a simple prompt for testing.")]

    @mcp.prompt(title="Prompt With Arguments")
    def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
        """A prompt with required arguments."""
        return [UserMessage(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'")]

    @mcp.prompt(title="Prompt With Embedded Resource")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
        """A prompt that includes an embedded resource."""
        resource = TextResourceContents(
            uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
        )
        return [
            UserMessage(EmbeddedResource(type="resource", resource=resource)),
            UserMessage("Please process the embedded resource above."),
        ]

    @mcp.prompt(title="Prompt With Image")
    def test_prompt_with_image() -> list[UserMessage]:
        """A prompt that includes image content."""
        return [
            UserMessage(ImageContent(type="image", data=TEST_IMAGE_BASE64, mime_type="image/png")),
            UserMessage("Please analyze the image above."),
        ]

    # ----- completion --------------------------------------------------------------
    @mcp.completion()
    async def complete(
        ref: PromptReference | ResourceTemplateReference,
        argument: CompletionArgument,
        context: CompletionContext | None,
    ) -> Completion:
        # The suite only checks the response shape; an empty list is what its reference returns.
        return Completion(values=[], total=0, has_more=False)

    return mcp


def _security(host: str) -> TransportSecuritySettings:
    """DNS-rebinding protection (the suite checks it) that still admits the bound host."""
    hosts = ["127.0.0.1", "localhost", "[::1]"]
    if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):
        hosts.append(host)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"{h}:*" for h in hosts],
        allowed_origins=[f"http://{h}:*" for h in hosts],
    )


async def serve(host: str, port: int) -> None:
    """Bind first (so port 0 works), announce the URL once uvicorn accepts, then serve."""
    app = build_server().streamable_http_app(
        event_store=InMemoryEventStore(),
        retry_interval=100,  # ms; makes SSE-polling reconnects fast
        transport_security=_security(host),
        host=host,
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(
        # h11, not httptools: it strips optional whitespace around header values (RFC 9110
        # §5.5), which the SEP-2243 Mcp-Name whitespace check relies on.
        uvicorn.Config(app, http="h11", log_level="warning", timeout_graceful_shutdown=1)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            await task  # surface the startup error
            return
        await asyncio.sleep(0.01)
    url_host = f"[{host}]" if ":" in host else host
    print(f"LISTENING http://{url_host}:{bound_port}/mcp", flush=True)
    await task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
