"""OpenAPI targets end to end: a real REST server behind the gateway, driven by the
official Python SDK client.

``tests/peers/petstore_server.py`` implements the Petstore API of
``examples/petstore.json``; the gateway serves it as MCP tools. Calls go through
the whole stack (SDK client -> gateway -> OpenAPI session -> HTTP -> server) and
the server's record of what it received proves the encoding on the wire. Bad
documents (broken ``$ref``, invalid YAML, a missing file, unreachable URLs) fail
only their own target, with a readable ``lastError``, beside a healthy one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from tests.peers.petstore_server import API_KEY, PetstorePeer, free_port, start_petstore
from tests.support.gateway import Gateway, run_gateway

from mcpmux.demo import demo_config

SPEC = str(Path(__file__).resolve().parents[2] / "examples" / "petstore.json")
CLOCK = next(t for t in demo_config()["targets"] if t["name"] == "clock")
PETSTORE_OPERATIONS = 19


def text_of(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


@pytest.fixture(scope="module")
def petstore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PetstorePeer]:
    with start_petstore(tmp_path_factory.mktemp("petstore") / "petstore.log") as peer:
        yield peer


@pytest.fixture(scope="module")
def gw(petstore: PetstorePeer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    targets = [
        CLOCK,
        {
            "name": "petstore",
            "openapi": {
                "spec": SPEC,
                "base_url": petstore.base_url,
                "headers": {"api_key": API_KEY},
            },
        },
        {  # by URL: the document's relative server (/api/v3) resolves against it
            "name": "remote",
            "openapi": {
                "spec": f"{petstore.origin}/openapi.json",
                "include": ["getPetById", "find*"],
                "exclude": ["findPetsByTags"],
            },
        },
        {  # answers after 60 s
            "name": "slow",
            "openapi": {
                "spec": SPEC,
                "base_url": f"{petstore.origin}/slow/api/v3",
                "timeout": 1,
                "include": ["getPetById"],
            },
        },
        {  # nobody listens
            "name": "refused",
            "openapi": {
                "spec": SPEC,
                "base_url": f"http://127.0.0.1:{free_port()}/api/v3",
                "include": ["getPetById"],
            },
        },
    ]
    with run_gateway({"targets": targets}, tmp_path_factory.mktemp("openapi")) as gateway:
        yield gateway


async def test_lists_petstore_tools(gw: Gateway) -> None:
    async with streamable_http_client(gw.mcp_url) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        tools = {t.name: t for t in (await s.list_tools()).tools}
    petstore = {n for n in tools if n.startswith("petstore_")}
    assert len(petstore) == PETSTORE_OPERATIONS
    assert {"petstore_addPet", "petstore_getPetById", "petstore_findPetsByTags"} <= petstore
    assert {n for n in tools if n.startswith("remote_")} == {
        "remote_getPetById",
        "remote_findPetsByStatus",
    }
    assert {n for n in tools if n.startswith("slow_")} == {"slow_getPetById"}
    assert "clock_now" in tools

    get = tools["petstore_getPetById"]
    assert get.input_schema["required"] == ["petId"]
    assert get.input_schema["properties"]["petId"]["type"] == "integer"
    assert get.description and "Returns a single pet" in get.description
    assert get.output_schema is not None and "name" in get.output_schema["properties"]
    assert get.annotations is not None and get.annotations.read_only_hint is True
    add = tools["petstore_addPet"]
    assert add.input_schema["required"] == ["body"]
    assert add.input_schema["properties"]["body"]["required"] == ["name", "photoUrls"]
    # api_key is set by the target's headers config, so deletePet does not ask for it.
    assert set(tools["petstore_deletePet"].input_schema["properties"]) == {"petId"}


async def test_calls_path_query_and_body(gw: Gateway, petstore: PetstorePeer) -> None:
    async with streamable_http_client(gw.mcp_url) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        await s.list_tools()  # the SDK validates structured results against outputSchema

        # JSON body
        pet = {
            "id": 4242,
            "name": "Doggie Dog",
            "photoUrls": ["https://example.com/d.png"],
            "tags": [{"id": 1, "name": "fluffy"}, {"id": 2, "name": "loud"}],
            "status": "pending",
        }
        added = await s.call_tool("petstore_addPet", {"body": pet})
        assert not added.is_error, text_of(added)
        assert added.structured_content is not None
        assert added.structured_content["name"] == "Doggie Dog"
        wire = petstore.requests()[-1]
        assert (wire["method"], wire["path"]) == ("POST", "/api/v3/pet")
        assert wire["headers"]["content-type"] == "application/json"
        assert json.loads(wire["body"]) == pet

        # path parameter
        got = await s.call_tool("petstore_getPetById", {"petId": 4242})
        assert not got.is_error, text_of(got)
        assert got.structured_content is not None and got.structured_content["id"] == 4242
        assert json.loads(text_of(got))["status"] == "pending"
        assert petstore.requests()[-1]["path"] == "/api/v3/pet/4242"

        # query array (form, explode: one key per value)
        found = await s.call_tool("petstore_findPetsByTags", {"tags": ["fluffy", "small"]})
        assert not found.is_error, text_of(found)
        names = {p["name"] for p in json.loads(text_of(found))}
        assert names == {"Doggie Dog", "Nemo"}
        assert petstore.requests()[-1]["query"] == "tags=fluffy&tags=small"

        # query scalars with characters that need encoding
        renamed = await s.call_tool(
            "petstore_updatePetWithForm", {"petId": 4242, "name": "Rex & Co/1", "status": "sold"}
        )
        assert not renamed.is_error, text_of(renamed)
        assert renamed.structured_content is not None
        assert renamed.structured_content["name"] == "Rex & Co/1"
        assert petstore.requests()[-1]["query"] == "name=Rex%20%26%20Co%2F1&status=sold"

        by_status = await s.call_tool("petstore_findPetsByStatus", {"status": "sold"})
        assert "Rex & Co/1" in {p["name"] for p in json.loads(text_of(by_status))}

        # the target's headers config reaches the API (inventory needs api_key)
        inventory = await s.call_tool("petstore_getInventory", {})
        assert not inventory.is_error, text_of(inventory)
        assert inventory.structured_content is not None
        assert inventory.structured_content.get("sold", 0) >= 1

        order = await s.call_tool(
            "petstore_placeOrder", {"body": {"id": 7, "petId": 4242, "quantity": 2}}
        )
        assert not order.is_error, text_of(order)
        fetched = await s.call_tool("petstore_getOrderById", {"orderId": 7})
        assert fetched.structured_content is not None
        assert fetched.structured_content["quantity"] == 2

        # binary body (base64 in, raw bytes on the wire) plus a query parameter
        upload = await s.call_tool(
            "petstore_uploadFile",
            {"petId": 4242, "additionalMetadata": "front view", "body": "aGVsbG8gcGV0"},
        )
        assert not upload.is_error, text_of(upload)
        wire = petstore.requests()[-1]
        assert wire["body"] == "hello pet"
        assert wire["headers"]["content-type"] == "application/octet-stream"

        login = await s.call_tool("petstore_loginUser", {"username": "user1", "password": "secret"})
        assert "logged in user session: user1" in text_of(login)

        deleted = await s.call_tool("petstore_deletePet", {"petId": 4242})
        assert not deleted.is_error, text_of(deleted)
        assert petstore.requests()[-1]["headers"]["api_key"] == API_KEY


async def test_error_status_is_an_error_result(gw: Gateway) -> None:
    async with streamable_http_client(gw.mcp_url) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        missing = await s.call_tool("petstore_getPetById", {"petId": 987654})
        assert missing.is_error
        text = text_of(missing)
        assert "getPetById (GET /pet/{petId})" in text
        assert "HTTP 404" in text and "Pet not found" in text

        invalid = await s.call_tool("petstore_addPet", {"body": {"photoUrls": []}})
        assert invalid.is_error and "HTTP 422" in text_of(invalid)

        wrong = await s.call_tool("petstore_getPetById", {"id": 1})
        assert wrong.is_error
        assert "unknown argument 'id'; expected petId" in text_of(wrong)


async def test_timeout_and_refused_name_the_operation(gw: Gateway) -> None:
    async with streamable_http_client(gw.mcp_url) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        slow = await s.call_tool("slow_getPetById", {"petId": 1})
        assert slow.is_error
        assert re.search(
            r"getPetById \(GET /pet/\{petId\}\): no response within 1 s", text_of(slow)
        )
        refused = await s.call_tool("refused_getPetById", {"petId": 1})
        assert refused.is_error
        assert re.search(
            r"getPetById \(GET /pet/\{petId\}\): cannot connect to the API: "
            r"127\.0\.0\.1:\d+: Connection refused",
            text_of(refused),
        )
        # the healthy targets are unaffected
        now = await s.call_tool("clock_add", {"a": 1, "b": 2})
        assert now.structured_content == {"sum": 3}
    targets = gw.targets()
    assert targets["slow"]["state"] == "ready" and targets["refused"]["state"] == "ready"


async def test_document_by_url_with_relative_server(gw: Gateway) -> None:
    async with streamable_http_client(gw.mcp_url) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        got = await s.call_tool("remote_getPetById", {"petId": 1})
        assert not got.is_error, text_of(got)
        assert got.structured_content is not None and got.structured_content["name"] == "Rex"


def test_admin_reports_openapi_targets(gw: Gateway) -> None:
    petstore = gw.targets()["petstore"]
    assert petstore["kind"] == "openapi"
    assert petstore["state"] == "ready"
    assert petstore["counts"]["tools"] == PETSTORE_OPERATIONS
    assert petstore["server"]["name"] == "Swagger Petstore - OpenAPI 3.0"
    assert petstore["lastError"] is None
    assert gw.targets()["remote"]["counts"]["tools"] == 2


# ------------------------------------------------------------------------- bad documents

BROKEN_REF = {
    "openapi": "3.0.3",
    "info": {"title": "broken", "version": "1"},
    "paths": {
        "/things": {
            "get": {
                "operationId": "listThings",
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Nope"}}
                        },
                    }
                },
            }
        }
    },
    "components": {"schemas": {}},
}
BAD_YAML = "openapi: 3.1.0\ninfo:\n  title: bad\n  version: '1'\npaths:\n  /x: [unclosed\n"

#: target -> what its lastError must say
BAD_ERRORS = {
    "broken-ref": r"listThings \(GET /things\): \$ref '#/components/schemas/Nope' does not resolve",
    "bad-yaml": r"invalid YAML at line \d+, column \d+",
    "missing": r"missing\.json: file not found",
    "not-openapi": r"not an OpenAPI document",
    "unreachable": r"cannot fetch: 127\.0\.0\.1:\d+: Connection refused",
    "not-found": r"cannot fetch: HTTP 404",
    "hangs": r"cannot fetch: no answer within 0\.5 s",
}


@pytest.fixture(scope="module")
def bad(petstore: PetstorePeer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("bad-openapi")
    (tmp / "broken.json").write_text(json.dumps(BROKEN_REF))
    (tmp / "bad.yaml").write_text(BAD_YAML)
    (tmp / "other.json").write_text(json.dumps({"name": "not an API", "paths": {}}))

    def target(name: str, spec: str) -> dict[str, Any]:
        return {"name": name, "openapi": {"spec": spec}, "timeout": 1}

    targets = [
        CLOCK,
        target("broken-ref", str(tmp / "broken.json")),
        target("bad-yaml", str(tmp / "bad.yaml")),
        target("missing", str(tmp / "missing.json")),
        target("not-openapi", str(tmp / "other.json")),
        target("unreachable", f"http://127.0.0.1:{free_port()}/openapi.json"),
        target("not-found", f"{petstore.origin}/nothing/openapi.json"),
        target("hangs", f"{petstore.origin}/slow/openapi.json"),
    ]
    with run_gateway({"targets": targets}, tmp, wait=False) as gateway:
        gateway.wait_target("clock")
        for name in BAD_ERRORS:
            gateway.wait_target(name, "failed")
        yield gateway


def test_bad_documents_fail_their_target_readably(bad: Gateway) -> None:
    targets = bad.targets()
    for name, pattern in BAD_ERRORS.items():
        error = targets[name]["lastError"]
        assert error and re.search(pattern, error), (name, error)
        assert targets[name]["kind"] == "openapi"
        assert "\n" not in error
    assert targets["clock"]["state"] == "ready"


async def test_healthy_target_keeps_working_beside_bad_documents(bad: Gateway) -> None:
    async with streamable_http_client(bad.mcp_url) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        tools = {t.name for t in (await s.list_tools()).tools}
        assert {"clock_now", "clock_add"} <= tools
        assert not any(n.startswith(("broken-ref_", "bad-yaml_", "missing_")) for n in tools)
        added = await s.call_tool("clock_add", {"a": 20, "b": 22})
        assert added.structured_content == {"sum": 42}
