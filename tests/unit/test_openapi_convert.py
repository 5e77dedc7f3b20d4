"""OpenAPI conversion (documents to tools) and request building (arguments to HTTP).

Every tool produced here is also checked against the JSON Schema 2020-12
metaschema, since MCP clients compile ``inputSchema``/``outputSchema`` with it and
reject a tool whose schema is invalid.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator

from mcpmux.config import OpenApiSpec
from mcpmux.upstream.openapi import OpenApiSession
from mcpmux.upstream.openapi.convert import (
    Body,
    Conversion,
    Operation,
    Param,
    SpecError,
    convert,
    parse_document,
    tool_name,
)
from mcpmux.upstream.openapi.request import ArgumentError, build_request, pick_base_url

PETSTORE = Path(__file__).resolve().parents[2] / "examples" / "petstore.json"
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ARG_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def check_tools(conv: Conversion) -> None:
    """Names, argument names and schemas are what strict clients accept."""
    for tool in conv.tools:
        assert TOOL_NAME.match(tool["name"]), tool["name"]
        Draft202012Validator.check_schema(tool["inputSchema"])
        assert tool["inputSchema"]["type"] == "object"
        for arg in tool["inputSchema"]["properties"]:
            assert ARG_NAME.match(arg), arg
        if "outputSchema" in tool:
            Draft202012Validator.check_schema(tool["outputSchema"])
            assert tool["outputSchema"]["type"] == "object"
        json.dumps(tool)  # plain JSON, no cycles


def doc30(
    paths: dict[str, Any], schemas: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "openapi": "3.0.3",
        "info": {"title": "T", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas or {}},
        **extra,
    }


def json_response(schema: Any) -> dict[str, Any]:
    return {"200": {"description": "ok", "content": {"application/json": {"schema": schema}}}}


def one(conv: Conversion, name: str | None = None) -> tuple[dict[str, Any], Operation]:
    tool = conv.tools[0] if name is None else next(t for t in conv.tools if t["name"] == name)
    return tool, conv.operations[tool["name"]]


@pytest.fixture(scope="module")
def petstore() -> Conversion:
    return convert(parse_document(PETSTORE.read_bytes(), str(PETSTORE)))


# ------------------------------------------------------------------------- petstore


def test_petstore_tools(petstore: Conversion) -> None:
    check_tools(petstore)
    assert petstore.version == "3.0.4"
    assert petstore.title == "Swagger Petstore - OpenAPI 3.0"
    assert petstore.servers == ["/api/v3"]
    assert len(petstore.tools) == petstore.total_operations == 19
    get, op = one(petstore, "getPetById")
    assert (op.method, op.path) == ("GET", "/pet/{petId}")
    assert get["description"].startswith("Find pet by ID.")
    assert get["inputSchema"]["properties"]["petId"] == {
        "type": "integer",
        "format": "int64",
        "description": "ID of pet to return",
    }
    assert get["inputSchema"]["required"] == ["petId"]
    assert get["inputSchema"]["additionalProperties"] is False
    assert get["annotations"]["readOnlyHint"] is True
    assert op.accept == "application/json, */*;q=0.1"
    # Output schemas describe without policing: no `required`.
    assert "required" not in get["outputSchema"]
    assert set(get["outputSchema"]["properties"]) >= {"id", "name", "photoUrls", "status"}
    add, add_op = one(petstore, "addPet")
    assert add_op.body == Body("application/json", "json", required=True)
    assert add["inputSchema"]["properties"]["body"]["required"] == ["name", "photoUrls"]
    assert (
        add["inputSchema"]["properties"]["body"]["description"] == "Create a new pet in the store"
    )
    # Arrays are not objects: no outputSchema, text only.
    assert "outputSchema" not in one(petstore, "findPetsByStatus")[0]
    # 200 without content: nothing to describe.
    assert "outputSchema" not in one(petstore, "deletePet")[0]
    upload, upload_op = one(petstore, "uploadFile")
    assert upload_op.body is not None and upload_op.body.encoding == "binary"
    assert upload["inputSchema"]["properties"]["body"]["contentEncoding"] == "base64"
    delete, _ = one(petstore, "deletePet")
    assert set(delete["inputSchema"]["properties"]) == {"api_key", "petId"}


def test_fixed_headers_are_hidden() -> None:
    doc = parse_document(PETSTORE.read_bytes(), "petstore.json")
    conv = convert(doc, fixed_headers=["API_KEY"])
    tool, op = one(conv, "deletePet")
    assert set(tool["inputSchema"]["properties"]) == {"petId"}
    assert [p.name for p in op.params] == ["petId"]


def test_include_and_exclude() -> None:
    doc = parse_document(PETSTORE.read_bytes(), "petstore.json")
    conv = convert(doc, include=["*Pet*", "getInventory", "nothingLikeThis"], exclude=["delete*"])
    names = {t["name"] for t in conv.tools}
    assert names == {
        "updatePet",
        "addPet",
        "findPetsByStatus",
        "findPetsByTags",
        "getPetById",
        "updatePetWithForm",
        "getInventory",
    }
    assert conv.total_operations == 19
    assert conv.warnings == ["include: 'nothingLikeThis' matches no operation"]
    # Excluded operations are not converted, so their problems do not matter.
    broken = doc30(
        {
            "/a": {"get": {"operationId": "good", "responses": {}}},
            "/b": {"get": {"operationId": "bad", "responses": json_response({"$ref": "#/nope"})}},
        }
    )
    assert [t["name"] for t in convert(broken, exclude=["bad"]).tools] == ["good"]
    with pytest.raises(SpecError, match="does not resolve"):
        convert(broken)


# ------------------------------------------------------------------------- naming


@pytest.mark.parametrize(
    ("op_id", "method", "path", "expected"),
    [
        ("getPetById", "get", "/pet/{petId}", "getPetById"),
        ("pets.list", "get", "/pets", "pets_list"),
        ("Pets / List all", "get", "/pets", "Pets_List_all"),
        ("_private-op", "get", "/x", "_private-op"),
        (None, "get", "/pet/{petId}", "get_pet_petId"),
        (None, "delete", "/users/{id}/keys/{key-id}", "delete_users_id_keys_key-id"),
        (None, "get", "/", "get"),
        ("", "post", "/v1/things.json", "post_v1_things_json"),
        ("!!!", "get", "/", "_"),
    ],
)
def test_tool_names(op_id: str | None, method: str, path: str, expected: str) -> None:
    assert tool_name(op_id, method, path) == expected


def test_long_names_are_shortened_stably() -> None:
    long_id = "get" + "VeryLongOperationName" * 5
    name = tool_name(long_id, "get", "/x")
    assert len(name) == 64 and TOOL_NAME.match(name)
    assert name == tool_name(long_id, "get", "/x")
    assert name != tool_name(long_id + "2", "get", "/x")
    assert name.startswith(long_id[:55])


def test_duplicate_names_get_suffixes() -> None:
    doc = doc30(
        {
            "/a": {"get": {"operationId": "list.things", "responses": {}}},
            "/b": {"get": {"operationId": "list_things", "responses": {}}},
            "/c": {"get": {"operationId": "list things", "responses": {}}},
            "/d": {"get": {"responses": {}}, "post": {"responses": {}}},
        }
    )
    conv = convert(doc)
    assert [t["name"] for t in conv.tools] == [
        "list_things",
        "list_things_2",
        "list_things_3",
        "get_d",
        "post_d",
    ]
    assert conv.operations["list_things_2"].operation_id == "list_things"


# ------------------------------------------------------------------------- parameters


def test_parameter_and_body_names_never_collide() -> None:
    doc = doc30(
        {
            "/things/{id}": {
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "post": {
                    "operationId": "make",
                    "parameters": [
                        {"name": "id", "in": "query", "schema": {"type": "integer"}},
                        {"name": "id", "in": "header", "schema": {"type": "string"}},
                        {"name": "body", "in": "query", "schema": {"type": "string"}},
                        {"name": "filter[status]", "in": "query", "schema": {"type": "string"}},
                        {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                        {"name": "session", "in": "cookie", "schema": {"type": "string"}},
                        {"name": "Accept", "in": "header", "schema": {"type": "string"}},
                        {"name": "Authorization", "in": "header", "schema": {"type": "string"}},
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"id": {"type": "string"}},
                                }
                            }
                        },
                    },
                    "responses": {},
                },
            }
        }
    )
    conv = convert(doc)
    check_tools(conv)
    tool, op = one(conv)
    props = tool["inputSchema"]["properties"]
    assert list(props) == [
        "id__path",
        "id__query",
        "id__header",
        "body__query",
        "filter_status",
        "X-Trace",
        "session",
        "body",
    ]
    assert tool["inputSchema"]["required"] == ["id__path", "body"]
    assert props["id__query"]["description"] == "Query parameter 'id'."
    assert props["filter_status"]["description"] == "Query parameter 'filter[status]'."
    assert props["body"]["properties"] == {"id": {"type": "string"}}
    assert [(p.name, p.location, p.arg) for p in op.params] == [
        ("id", "path", "id__path"),
        ("id", "query", "id__query"),
        ("id", "header", "id__header"),
        ("body", "query", "body__query"),
        ("filter[status]", "query", "filter_status"),
        ("X-Trace", "header", "X-Trace"),
        ("session", "cookie", "session"),
    ]


def test_operation_parameters_override_path_parameters() -> None:
    doc = doc30(
        {
            "/x/{id}": {
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "q",
                        "in": "query",
                        "description": "path level",
                        "schema": {"type": "string"},
                    },
                ],
                "get": {
                    "parameters": [
                        {
                            "name": "q",
                            "in": "query",
                            "description": "op level",
                            "required": True,
                            "schema": {"type": "integer"},
                        },
                    ],
                    "responses": {},
                },
            }
        }
    )
    tool, op = one(convert(doc))
    assert tool["inputSchema"]["properties"]["q"] == {"type": "integer", "description": "op level"}
    assert tool["inputSchema"]["required"] == ["id", "q"]
    assert [p.name for p in op.params] == ["id", "q"]


def test_undeclared_path_variables_become_required_strings() -> None:
    tool, op = one(convert(doc30({"/users/{user}/repos/{repo}": {"get": {"responses": {}}}})))
    assert tool["inputSchema"]["required"] == ["user", "repo"]
    assert tool["inputSchema"]["properties"]["repo"] == {"type": "string"}
    assert [p.location for p in op.params] == ["path", "path"]


def test_parameter_refs_styles_and_content() -> None:
    doc = doc30(
        {
            "/s": {
                "get": {
                    "parameters": [
                        {"$ref": "#/components/parameters/Limit"},
                        {
                            "name": "ids",
                            "in": "query",
                            "style": "pipeDelimited",
                            "explode": False,
                            "schema": {"type": "array", "items": {"type": "integer"}},
                        },
                        {
                            "name": "filter",
                            "in": "query",
                            "style": "deepObject",
                            "schema": {"type": "object"},
                        },
                        {
                            "name": "where",
                            "in": "query",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                    ],
                    "responses": {},
                }
            }
        }
    )
    doc["components"]["parameters"] = {
        "Limit": {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}}
    }
    tool, op = one(convert(doc))
    assert tool["inputSchema"]["properties"]["limit"] == {"type": "integer", "maximum": 100}
    styles = {p.name: (p.style, p.explode, p.as_json) for p in op.params}
    assert styles == {
        "limit": ("form", True, False),
        "ids": ("pipeDelimited", False, False),
        "filter": ("deepObject", False, False),
        "where": ("form", True, True),
    }


# ------------------------------------------------------------------------- $ref and schemas


def test_recursive_schemas_are_expanded_once() -> None:
    schemas = {
        "Node": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                "meta": {"$ref": "#/components/schemas/Meta"},
            },
        },
        "Meta": {"type": "object", "properties": {"tag": {"type": "string"}}},
        "A": {"type": "object", "properties": {"b": {"$ref": "#/components/schemas/B"}}},
        "B": {"type": "object", "properties": {"a": {"$ref": "#/components/schemas/A"}}},
        "Alias": {"$ref": "#/components/schemas/Node"},
    }
    paths = {
        "/tree": {
            "post": {
                "operationId": "tree",
                "requestBody": {
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Alias"}}
                    }
                },
                "responses": json_response({"$ref": "#/components/schemas/A"}),
            }
        }
    }
    conv = convert(doc30(paths, schemas))
    check_tools(conv)
    tool, _ = one(conv)
    node = tool["inputSchema"]["properties"]["body"]
    assert node["properties"]["name"] == {"type": "string"}
    assert node["properties"]["children"]["items"] == {
        "type": "object",
        "description": "Node (recursive; not expanded)",
    }
    assert node["properties"]["meta"]["properties"] == {"tag": {"type": "string"}}
    # A <-> B: A shows B one level deep; B's way back to A is a placeholder.
    a = tool["outputSchema"]
    assert a["properties"]["b"]["properties"]["a"] == {
        "type": "object",
        "description": "A (recursive; not expanded)",
    }


def test_kubernetes_style_property_named_ref_is_not_a_reference() -> None:
    schemas = {
        "Props": {
            "type": "object",
            "properties": {
                "$ref": {"type": "string"},
                "items": {"$ref": "#/components/schemas/Props"},
                "enumish": {"enum": [{"$ref": "#/not/a/reference"}]},
            },
        }
    }
    paths = {
        "/p": {
            "get": {
                "operationId": "p",
                "responses": json_response({"$ref": "#/components/schemas/Props"}),
            }
        }
    }
    tool, _ = one(convert(doc30(paths, schemas)))
    props = tool["outputSchema"]["properties"]
    assert props["$ref"] == {"type": "string"}
    assert props["enumish"] == {"enum": [{"$ref": "#/not/a/reference"}]}
    assert "recursive" in props["items"]["description"]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("#/components/schemas/Missing", r"'#/components/schemas/Missing' does not resolve"),
        ("other.yaml#/Pet", r"points outside the document"),
        ("https://example.com/s.json", r"points outside the document"),
        ("#components/schemas/Pet", r"is not a JSON pointer"),
    ],
)
def test_bad_refs_are_readable_errors(ref: str, message: str) -> None:
    paths = {"/p": {"get": {"operationId": "getP", "responses": json_response({"$ref": ref})}}}
    with pytest.raises(SpecError, match=r"^getP \(GET /p\): \$ref .*" + message):
        convert(doc30(paths, {"Pet": {"type": "object"}}))


def test_circular_alias_and_parameter_refs_are_errors() -> None:
    schemas = {"A": {"$ref": "#/components/schemas/B"}, "B": {"$ref": "#/components/schemas/A"}}
    paths = {
        "/p": {
            "get": {
                "operationId": "p",
                "responses": json_response({"$ref": "#/components/schemas/A"}),
            }
        }
    }
    with pytest.raises(SpecError, match="circular"):
        convert(doc30(paths, schemas))
    doc = doc30(
        {"/p": {"get": {"parameters": [{"$ref": "#/components/parameters/X"}], "responses": {}}}}
    )
    doc["components"]["parameters"] = {"X": {"$ref": "#/components/parameters/X"}}
    with pytest.raises(SpecError, match="circular"):
        convert(doc)


def test_broken_refs_are_counted() -> None:
    paths = {
        f"/p{i}": {"get": {"operationId": f"p{i}", "responses": json_response({"$ref": "#/x"})}}
        for i in range(3)
    }
    with pytest.raises(SpecError, match=r"^p0 \(GET /p0\): .* \(and 2 more\)$"):
        convert(doc30(paths))


def test_schemas_become_valid_json_schema_2020_12() -> None:
    schema = {
        "type": "object",
        "required": ["a", "ro"],
        "properties": {
            "a": {"type": "string", "nullable": True, "example": "x", "x-internal": True},
            "n": {
                "type": "integer",
                "minimum": 0,
                "exclusiveMinimum": True,
                "maximum": 9,
                "exclusiveMaximum": False,
            },
            "e": {"type": "string", "enum": ["on", "off"], "nullable": True},
            "u": {"nullable": True, "allOf": [{"$ref": "#/components/schemas/Meta"}]},
            "bad": {"type": "string", "required": True, "pattern": "^\\p{L}+$", "minLength": -1},
            "file": {"type": "file"},
            "tuple": {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]},
            "ro": {"type": "string", "readOnly": True},
            "wo": {"type": "string", "writeOnly": True},
            "closed": {"type": "object", "additionalProperties": False},
        },
        "discriminator": {"propertyName": "a"},
        "xml": {"name": "thing"},
    }
    paths = {
        "/s": {
            "put": {
                "operationId": "s",
                "requestBody": {"content": {"application/json": {"schema": schema}}},
                "responses": json_response(copy.deepcopy(schema)),
            }
        }
    }
    conv = convert(doc30(paths, {"Meta": {"type": "object"}}))
    check_tools(conv)
    tool, _ = one(conv)
    body = tool["inputSchema"]["properties"]["body"]
    p = body["properties"]
    assert p["a"] == {"type": ["string", "null"], "examples": ["x"]}
    assert p["n"] == {"type": "integer", "exclusiveMinimum": 0, "maximum": 9}
    assert p["e"] == {"type": ["string", "null"], "enum": ["on", "off", None]}
    assert p["u"] == {"anyOf": [{"allOf": [{"type": "object"}]}, {"type": "null"}]}
    assert p["bad"] == {"type": "string"}
    assert p["file"] == {"type": "string"}
    assert p["tuple"] == {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]}
    assert "ro" not in p and "wo" in p  # readOnly is never sent
    assert body["required"] == ["a"]
    assert p["closed"]["additionalProperties"] is False
    assert "discriminator" not in body and "xml" not in body
    out = tool["outputSchema"]["properties"]
    assert "wo" not in out and "ro" in out  # writeOnly is never received
    assert "additionalProperties" not in out["closed"]  # output schemas do not police


def test_output_schema_only_when_every_success_is_a_json_object() -> None:
    obj = {"type": "object", "properties": {"x": {"type": "integer"}}}
    base = {"operationId": "op"}

    def output(responses: dict[str, Any]) -> Any:
        tool, op = one(convert(doc30({"/o": {"get": {**base, "responses": responses}}})))
        assert op.structured == ("outputSchema" in tool)
        return tool.get("outputSchema")

    assert output(json_response(obj)) == obj
    assert output(json_response({"type": "array", "items": obj})) is None
    assert output(json_response({"type": "string"})) is None
    assert output({**json_response(obj), "204": {"description": "empty"}}) is None
    assert output({"201": json_response(obj)["200"], "404": {"description": "no"}}) == obj
    allof = {"allOf": [obj, {"type": "object", "properties": {"y": {"type": "string"}}}]}
    assert output(json_response(allof))["type"] == "object"
    assert output(json_response({"type": ["object", "null"], "properties": {}}))["type"] == "object"
    xml_only = {"200": {"description": "ok", "content": {"application/xml": {"schema": obj}}}}
    assert output(xml_only) is None
    vendor = {
        "200": {"description": "ok", "content": {"application/vnd.api+json": {"schema": obj}}}
    }
    assert output(vendor) == obj


def test_request_body_media_type_choice() -> None:
    def body_of(content: dict[str, Any]) -> tuple[Body | None, dict[str, Any]]:
        doc = doc30({"/b": {"post": {"requestBody": {"content": content}, "responses": {}}}})
        tool, op = one(convert(doc))
        return op.body, tool["inputSchema"]["properties"].get("body", {})

    obj = {"schema": {"type": "object", "properties": {"f": {"type": "string"}}}}
    assert body_of({"application/xml": obj, "application/x-www-form-urlencoded": obj})[0] == Body(
        "application/x-www-form-urlencoded", "form"
    )
    assert body_of({"text/plain": obj})[1] == {"type": "string"}
    body, schema = body_of(
        {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "note": {"type": "string"},
                        "file": {"type": "string", "format": "binary"},
                    },
                }
            }
        }
    )
    assert body == Body("multipart/form-data", "multipart", files=frozenset({"file"}))
    assert schema["properties"]["file"]["contentEncoding"] == "base64"
    assert body_of({"application/merge-patch+json": obj})[0] == Body(
        "application/merge-patch+json", "json"
    )


# ------------------------------------------------------------------------- versions


SWAGGER = {
    "swagger": "2.0",
    "info": {"title": "Old", "version": "2"},
    "host": "api.example.com",
    "basePath": "/v2",
    "schemes": ["https", "http"],
    "produces": ["application/json"],
    "paths": {
        "/pets": {
            "get": {
                "operationId": "listPets",
                "parameters": [
                    {
                        "name": "tags",
                        "in": "query",
                        "type": "array",
                        "items": {"type": "string"},
                        "collectionFormat": "multi",
                    },
                    {"name": "ids", "in": "query", "type": "array", "items": {"type": "integer"}},
                    {
                        "name": "sort",
                        "in": "query",
                        "type": "string",
                        "enum": ["asc", "desc"],
                        "default": "asc",
                    },
                    {
                        "name": "X-Size",
                        "in": "header",
                        "type": "integer",
                        "minimum": 1,
                        "exclusiveMinimum": True,
                    },
                ],
                "responses": {
                    "200": {"description": "ok", "schema": {"$ref": "#/definitions/PetList"}}
                },
            },
            "post": {
                "operationId": "addPet",
                "parameters": [
                    {
                        "in": "body",
                        "name": "pet",
                        "required": True,
                        "schema": {"$ref": "#/definitions/Pet"},
                    }
                ],
                "responses": {
                    "200": {"description": "ok", "schema": {"$ref": "#/definitions/Pet"}}
                },
            },
        },
        "/pets/{id}/photo": {
            "post": {
                "operationId": "upload",
                "consumes": ["multipart/form-data"],
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "type": "integer"},
                    {"name": "caption", "in": "formData", "type": "string", "required": True},
                    {"name": "file", "in": "formData", "type": "file"},
                ],
                "responses": {"204": {"description": "done"}},
            }
        },
        "/pets/{id}": {
            "patch": {
                "consumes": ["application/x-www-form-urlencoded"],
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "type": "integer"},
                    {"name": "name", "in": "formData", "type": "string"},
                ],
                "responses": {"200": {"description": "ok"}},
            }
        },
    },
    "definitions": {
        "Pet": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "nick": {"type": "string", "x-nullable": True},
                "parent": {"$ref": "#/definitions/Pet"},
            },
        },
        "PetList": {
            "type": "object",
            "properties": {"items": {"type": "array", "items": {"$ref": "#/definitions/Pet"}}},
        },
    },
}


def test_swagger_2() -> None:
    conv = convert(copy.deepcopy(SWAGGER))
    check_tools(conv)
    assert conv.version == "2.0"
    assert conv.servers == ["https://api.example.com/v2", "http://api.example.com/v2"]
    assert [t["name"] for t in conv.tools] == ["listPets", "addPet", "upload", "patch_pets_id"]
    listing, op = one(conv, "listPets")
    props = listing["inputSchema"]["properties"]
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["sort"] == {"type": "string", "enum": ["asc", "desc"], "default": "asc"}
    assert props["X-Size"] == {"type": "integer", "exclusiveMinimum": 1}
    assert {p.name: (p.style, p.explode) for p in op.params} == {
        "tags": ("form", True),
        "ids": ("form", False),
        "sort": ("form", False),
        "X-Size": ("simple", False),
    }
    assert (
        listing["outputSchema"]["properties"]["items"]["items"]["properties"]["parent"][
            "description"
        ]
        == "Pet (recursive; not expanded)"
    )
    assert op.accept == "application/json, */*;q=0.1"
    add, add_op = one(conv, "addPet")
    assert add_op.body == Body("application/json", "json", required=True)
    assert add["inputSchema"]["properties"]["body"]["properties"]["nick"]["type"] == [
        "string",
        "null",
    ]
    upload, up_op = one(conv, "upload")
    assert up_op.body == Body(
        "multipart/form-data", "multipart", required=True, files=frozenset({"file"})
    )
    assert upload["inputSchema"]["properties"]["body"]["required"] == ["caption"]
    assert (
        upload["inputSchema"]["properties"]["body"]["properties"]["file"]["contentEncoding"]
        == "base64"
    )
    assert "outputSchema" not in upload
    _, patch_op = one(conv, "patch_pets_id")
    assert patch_op.body == Body("application/x-www-form-urlencoded", "form")


def test_swagger_servers_without_host_or_scheme() -> None:
    doc = {**copy.deepcopy(SWAGGER), "schemes": []}
    assert convert(doc).servers == ["//api.example.com/v2"]
    del doc["host"]
    assert convert(doc).servers == ["/v2"]


def test_openapi_3_1() -> None:
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "New", "version": "3"},
        "servers": [
            {
                "url": "https://{region}.example.com/{base}",
                "variables": {
                    "region": {"default": "eu"},
                    "base": {"default": "v3", "enum": ["v3"]},
                },
            }
        ],
        "paths": {
            "/items/{id}": {
                "get": {
                    "operationId": "getItem",
                    "parameters": [
                        {
                            "name": "id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "const": "x"},
                        }
                    ],
                    "servers": [{"url": "https://items.example.com"}],
                    "responses": json_response(
                        {"$ref": "#/components/schemas/Item", "description": "The item."}
                    ),
                }
            }
        },
        "webhooks": {"ping": {"post": {"responses": {}}}},
        "components": {
            "schemas": {
                "Item": {
                    "type": ["object", "null"],
                    "description": "An item.",
                    "properties": {"v": {"type": ["integer", "null"], "examples": [1, None]}},
                }
            }
        },
    }
    conv = convert(doc)
    check_tools(conv)
    assert conv.servers == ["https://eu.example.com/v3"]
    tool, op = one(conv)
    assert op.servers == ("https://items.example.com",)
    out = tool["outputSchema"]
    assert out["type"] == "object" and out["description"] == "The item."
    assert out["properties"]["v"] == {"type": ["integer", "null"], "examples": [1, None]}
    assert tool["inputSchema"]["properties"]["id"] == {"type": "string", "const": "x"}
    assert convert({"openapi": "3.1.0", "info": {}, "webhooks": {}}).tools == []


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "the top level is not a mapping"),
        ({"info": {}}, "neither an 'openapi' nor a 'swagger' field"),
        ({"swagger": "1.2"}, "unsupported Swagger version '1.2'"),
        ({"openapi": "4.0.0"}, "unsupported OpenAPI version '4.0.0'"),
        ({"openapi": "3.0.0", "paths": []}, "'paths' must be a mapping"),
    ],
)
def test_not_openapi(doc: Any, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        convert(doc)


# ------------------------------------------------------------------------- parsing


def test_yaml_documents() -> None:
    text = """
openapi: 3.0.0   # a float if unquoted in some files: 3.0
info: {title: Y, version: 1}
paths:
  /d:
    get:
      parameters:
        - {name: since, in: query, schema: {type: string, default: 2024-01-01}}
      responses:
        200:
          description: ok
          content:
            application/json:
              schema: {type: object, properties: {on: {type: boolean}}}
"""
    conv = convert(parse_document(text, "api.yaml"))
    tool, _ = one(conv)
    assert tool["inputSchema"]["properties"]["since"]["default"] == "2024-01-01"
    assert "outputSchema" in tool  # the int key 200 became "200"
    assert set(tool["outputSchema"]["properties"]) == {"on"}  # YAML 1.2: "on" is not a boolean
    assert parse_document("a: [yes, no, on, true, False]") == {
        "a": ["yes", "no", "on", True, False]
    }
    assert convert(parse_document("openapi: 3.0\ninfo: {}\npaths: {}\n")).version == "3.0"


@pytest.mark.parametrize(
    ("text", "hint", "message"),
    [
        ('{"openapi": "3.0.0",\n "paths": {,}}', "api.json", "invalid JSON at line 2, column 12"),
        ('{"openapi": "3.0.0",\n "paths": {,}}', "", "invalid JSON at line 2"),
        ("openapi: 3.0.0\npaths:\n  /x: [a\n", "api.yaml", "invalid YAML at line 4, column 1"),
        ("a: &x [*x]\n", "", "refers to itself"),
        (b"\xff\xfe", "", "not UTF-8"),
    ],
)
def test_parse_errors(text: str | bytes, hint: str, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_document(text, hint)


def test_parse_bom_and_content_type_hint() -> None:
    assert parse_document(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}
    assert parse_document("a: 1", "application/yaml http://x/spec") == {"a": 1}


# ------------------------------------------------------------------------- requests


def op_with(
    *params: Param, body: Body | None = None, path: str = "/p", accept: str | None = None
) -> Operation:
    return Operation("t", "t", "GET", path, tuple(params), body, accept)


def q(name: str, **kw: Any) -> Param:
    return Param(name, "query", name, **kw)


@pytest.mark.parametrize(
    ("param", "value", "query"),
    [
        (q("ids"), [3, 4], "ids=3&ids=4"),
        (q("ids", explode=False), [3, 4], "ids=3,4"),
        (q("ids", style="spaceDelimited", explode=False), [3, 4], "ids=3%204"),
        (q("ids", style="pipeDelimited", explode=False), [3, 4], "ids=3%7C4"),
        (q("ids", style="tabDelimited", explode=False), ["a", "b"], "ids=a%09b"),
        (q("ids"), [], ""),
        (q("o"), {"a": 1, "b": "x y"}, "a=1&b=x%20y"),
        (q("o", explode=False), {"a": 1, "b": 2}, "o=a,1,b,2"),
        (q("o", style="spaceDelimited", explode=False), {"a": 1, "b": 2}, "o=a%201%20b%202"),
        (q("f", style="deepObject"), {"a": 1, "n": {"b": True}}, "f%5Ba%5D=1&f%5Bn%5D%5Bb%5D=true"),
        (q("f", style="deepObject"), {"tags": ["x", "y"]}, "f%5Btags%5D=x&f%5Btags%5D=y"),
        (q("flag"), False, "flag=false"),
        (q("n"), 1.5, "n=1.5"),
        (q("s"), "a&b=c/d?é", "s=a%26b%3Dc%2Fd%3F%C3%A9"),
        (q("s", allow_reserved=True), "a/b:c", "s=a/b:c"),
        (q("w", as_json=True), {"a": [1]}, "w=%7B%22a%22%3A%5B1%5D%7D"),
        (q("x[y]"), "1", "x%5By%5D=1"),
    ],
)
def test_query_serialization(param: Param, value: Any, query: str) -> None:
    req = build_request(op_with(param), {param.arg: value}, "http://h/api")
    assert req.url == "http://h/api/p" + (f"?{query}" if query else "")


@pytest.mark.parametrize(
    ("style", "explode", "value", "path"),
    [
        ("simple", False, "a/b c", "/v/a%2Fb%20c"),
        ("simple", False, "..", "/v/%2E%2E"),
        ("simple", False, 42, "/v/42"),
        ("simple", False, [1, 2], "/v/1,2"),
        ("simple", False, {"a": 1, "b": 2}, "/v/a,1,b,2"),
        ("simple", True, {"a": 1, "b": 2}, "/v/a=1,b=2"),
        ("label", False, "x", "/v/.x"),
        ("label", True, [1, 2], "/v/.1.2"),
        ("label", False, [1, 2], "/v/.1,2"),
        ("matrix", False, "x", "/v/;id=x"),
        ("matrix", True, [1, 2], "/v/;id=1;id=2"),
        ("matrix", False, [1, 2], "/v/;id=1,2"),
        ("matrix", True, {"a": 1}, "/v/;a=1"),
    ],
)
def test_path_serialization(style: str, explode: bool, value: Any, path: str) -> None:
    p = Param("id", "path", "id", required=True, style=style, explode=explode)
    req = build_request(op_with(p, path="/v/{id}"), {"id": value}, "http://h/")
    assert req.url == "http://h" + path


def test_headers_cookies_and_config_headers() -> None:
    params = (
        Param("X-Ids", "header", "X-Ids", style="simple", explode=False),
        Param("X-Obj", "header", "X-Obj", style="simple", explode=True),
        Param("sid", "cookie", "sid"),
        Param("pref", "cookie", "pref"),
    )
    op = op_with(*params, accept="application/json")
    req = build_request(
        op,
        {"X-Ids": [1, 2], "X-Obj": {"a": 1}, "sid": "a b", "pref": ["x", "y"]},
        "http://h",
        {"Cookie": "fixed=1", "accept": "text/plain", "api_key": "k"},
    )
    assert req.headers == {
        "X-Ids": "1,2",
        "X-Obj": "a=1",
        "Cookie": "fixed=1; sid=a%20b; pref=x,y",
        "accept": "text/plain",
        "api_key": "k",
    }
    with pytest.raises(ArgumentError, match="must not contain line breaks"):
        build_request(op, {"X-Ids": "a\r\nInjected: 1"}, "http://h")


def test_bodies() -> None:
    json_op = op_with(body=Body("application/json", "json", required=True))
    req = build_request(json_op, {"body": {"a": [1, None]}}, "http://h")
    assert req.body == b'{"a":[1,null]}' and req.headers["Content-Type"] == "application/json"
    assert build_request(json_op, {"body": [1]}, "http://h").body == b"[1]"

    form_op = op_with(body=Body("application/x-www-form-urlencoded", "form"))
    req = build_request(
        form_op, {"body": {"name": "a b&c", "tags": ["x", "y"], "ok": True, "n": None}}, "http://h"
    )
    assert parse_qs(req.body.decode()) == {"name": ["a b&c"], "tags": ["x", "y"], "ok": ["true"]}  # type: ignore[union-attr]
    assert req.body == b"name=a+b%26c&tags=x&tags=y&ok=true"
    with pytest.raises(ArgumentError, match="must be an object"):
        build_request(form_op, {"body": "x"}, "http://h")

    multi_op = op_with(body=Body("multipart/form-data", "multipart", files=frozenset({"file"})))
    req = build_request(
        multi_op,
        {"body": {"note": "hi", "meta": {"k": 1}, "file": base64.b64encode(b"\x00\x01").decode()}},
        "http://h",
    )
    ctype = req.headers["Content-Type"]
    boundary = ctype.split("boundary=")[1]
    assert ctype.startswith("multipart/form-data; boundary=")
    assert req.body is not None
    parts = req.body.split(f"--{boundary}".encode())
    assert b'name="note"\r\n\r\nhi\r\n' in parts[1]
    assert b'Content-Type: application/json\r\n\r\n{"k":1}' in parts[2]
    assert b'filename="file"' in parts[3] and b"\r\n\r\n\x00\x01\r\n" in parts[3]
    assert parts[-1] == b"--\r\n"

    text_op = op_with(body=Body("text/plain", "text"))
    assert build_request(text_op, {"body": "héllo"}, "http://h").body == "héllo".encode()
    with pytest.raises(ArgumentError, match="must be a string"):
        build_request(text_op, {"body": {"a": 1}}, "http://h")
    bin_op = op_with(body=Body("application/octet-stream", "binary"))
    assert build_request(bin_op, {"body": "aGk="}, "http://h").body == b"hi"
    with pytest.raises(ArgumentError, match="not valid base64"):
        build_request(bin_op, {"body": "not base64!"}, "http://h")
    # no body given and none required: nothing is sent
    assert build_request(form_op, {}, "http://h").body is None
    wildcard = op_with(body=Body("*/*", "json"))
    assert (
        build_request(wildcard, {"body": {}}, "http://h").headers["Content-Type"]
        == "application/json"
    )


def test_argument_errors() -> None:
    op = op_with(
        Param("id", "path", "id", required=True, style="simple", explode=False),
        q("limit"),
        body=Body("application/json", "json", required=True),
        path="/x/{id}",
    )
    with pytest.raises(ArgumentError, match=r"^missing required arguments 'id', 'body'$"):
        build_request(op, {"limit": 1}, "http://h")
    with pytest.raises(ArgumentError, match=r"^unknown argument 'lmit'; expected id, limit, body$"):
        build_request(op, {"id": 1, "body": {}, "lmit": 2}, "http://h")
    with pytest.raises(ArgumentError, match="missing required argument 'id'"):
        build_request(op, {"id": None, "body": {}}, "http://h")
    req = build_request(op, {"id": "a", "body": {}, "limit": None}, "http://h/base/")
    assert req.url == "http://h/base/x/a"


def test_pick_base_url() -> None:
    assert pick_base_url(["/api/v3"], "http://h:1/docs/openapi.json") == "http://h:1/api/v3"
    assert pick_base_url(["v1"], "http://h/docs/openapi.json") == "http://h/docs/v1"
    assert pick_base_url(["/api/v3"], None) is None
    assert pick_base_url(["//h/api"], None) == "https://h/api"
    assert pick_base_url(["/x", "https://a/b"], None) == "https://a/b"


# ------------------------------------------------------------------------- session


async def test_session_results_against_a_local_api(tmp_path: Path) -> None:
    """Content kinds, structured-content guarantees and cookie isolation."""
    seen_cookies: list[str] = []

    async def obj(request: web.Request) -> web.Response:
        seen_cookies.append(request.headers.get("Cookie", ""))
        return web.json_response({"ok": True}, headers={"Set-Cookie": "sid=secret; Path=/"})

    async def empty(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def png(request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG", content_type="image/png")

    async def latin(request: web.Request) -> web.Response:
        return web.Response(
            body="café".encode("latin-1"), content_type="text/plain", charset="latin-1"
        )

    app = web.Application()
    app.add_routes(
        [
            web.get("/obj", obj),
            web.get("/empty", empty),
            web.get("/png", png),
            web.get("/latin", latin),
        ]
    )
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    obj_schema = {
        "200": {
            "description": "ok",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    }
    doc = doc30(
        {
            "/obj": {"get": {"operationId": "obj", "responses": obj_schema}},
            "/empty": {"get": {"operationId": "empty", "responses": obj_schema}},
            "/png": {"get": {"operationId": "png", "responses": {}}},
            "/latin": {"get": {"operationId": "latin", "responses": {}}},
        },
        servers=[{"url": f"http://127.0.0.1:{port}"}],
    )
    spec_path = tmp_path / "api.json"
    spec_path.write_text(json.dumps(doc))
    try:
        async with aiohttp.ClientSession() as pool:
            catalog = OpenApiSession("api", OpenApiSpec(spec=str(spec_path)), pool, 5)
            init = await catalog.open()
            assert init["serverInfo"] == {"name": "T", "version": "1"}
            client = OpenApiSession("api", OpenApiSpec(spec=str(spec_path)), pool, 5, catalog)
            await client.open()
            assert client.api is catalog.api  # loaded once, shared

            async def call(name: str) -> dict[str, Any]:
                resp = await client.request("tools/call", {"name": name, "arguments": {}})
                result: dict[str, Any] = resp["result"]
                return result

            first = await call("obj")
            assert first["structuredContent"] == {"ok": True}
            await call("obj")
            assert seen_cookies == ["", ""]  # the API's cookie is not replayed
            empty_result = await call("empty")
            assert empty_result["isError"] is True
            assert (
                "empty (GET /empty): HTTP 200 answered an empty body"
                in empty_result["content"][0]["text"]
            )
            image = await call("png")
            assert image["content"] == [
                {"type": "image", "data": "iVBORw==", "mimeType": "image/png"}
            ]
            assert (await call("latin"))["content"][0]["text"] == "café"
            ping = await client.request("ping", None)
            assert ping["result"] == {}
            unknown = await client.request("resources/list", None)
            assert unknown["error"]["code"] == -32601
            await client.aclose()
            await catalog.aclose()
            await asyncio.sleep(0)
    finally:
        await runner.cleanup()


def test_huge_tools_are_shortened_to_fit() -> None:
    """A chain of big schemas (like Kubernetes' Pod) is cut, never sent whole."""
    schemas: dict[str, Any] = {}
    for i in range(40):
        props: dict[str, Any] = {
            f"field{j}": {"type": "string", "description": "x" * 200} for j in range(20)
        }
        if i < 39:
            props["next"] = {"$ref": f"#/components/schemas/S{i + 1}"}
        schemas[f"S{i}"] = {"type": "object", "properties": props}
    paths = {
        "/big": {
            "put": {
                "operationId": "big",
                "requestBody": {
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/S0"}}}
                },
                "responses": json_response({"$ref": "#/components/schemas/S0"}),
            }
        },
        "/small": {
            "get": {
                "operationId": "small",
                "responses": json_response({"$ref": "#/components/schemas/S38"}),
            }
        },
    }
    conv = convert(doc30(paths, schemas))
    check_tools(conv)
    big, op = one(conv, "big")
    assert len(json.dumps(big)) <= 64 * 1024
    assert "outputSchema" not in big and not op.structured
    node = big["inputSchema"]["properties"]["body"]
    depth = 0
    while "next" in node.get("properties", {}):
        node = node["properties"]["next"]
        depth += 1
    assert node["description"].endswith("(nested too deep; not expanded)")
    assert 0 < depth < 39
    small, small_op = one(conv, "small")  # untouched: under the limit
    assert small_op.structured and "next" in small["outputSchema"]["properties"]
    assert conv.warnings == [
        "1 tool(s) over 64 KiB had their schemas shortened (deepest references left as placeholders): big"
    ]
