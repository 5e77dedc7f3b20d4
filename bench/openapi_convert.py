"""How long turning an OpenAPI document into MCP tools takes (parse + convert).

    .venv/bin/python bench/openapi_convert.py [--runs 5] [--ops 500] [--spec FILE ...]

Documents measured:

* ``petstore``: ``examples/petstore.json`` (19 operations);
* ``synthetic``: a generated OpenAPI 3.0 document shaped like a real SaaS API:
  ``--ops`` operations (default 500) over CRUD resources, with shared parameters
  and responses, ``allOf`` composition, ``nullable`` fields, enums, a
  self-recursive tree, mutually recursive resources and a ``$ref`` on nearly every
  schema; also measured as YAML;
* ``kubernetes``: the real Kubernetes object schemas that ``kubernetes-validate``
  ships (700+ definitions, deep nesting, the recursive ``JSONSchemaProps``) under
  the REST operations Kubernetes serves for every kind (list, create, read,
  replace, patch, delete, deletecollection), as an OpenAPI 3.1 document; measured
  only when that package is installed (no network is used);
* any ``--spec FILE`` given.

Prints one row per document: size, operations, tools, parse and convert time
(median of ``--runs``) and the size of the ``tools/list`` answer. Times are for
this machine; no test asserts on them.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mcpmux.upstream.openapi.convert import convert, parse_document  # noqa: E402

# ------------------------------------------------------------------------ synthetic


def synthetic(ops: int) -> dict[str, Any]:
    """A realistic OpenAPI 3.0 document with about ``ops`` operations."""
    resources = max(1, ops // 6)
    schemas: dict[str, Any] = {
        "Id": {"type": "string", "format": "uuid", "readOnly": True},
        "Timestamps": {
            "type": "object",
            "properties": {
                "createdAt": {"type": "string", "format": "date-time", "readOnly": True},
                "updatedAt": {"type": "string", "format": "date-time", "nullable": True},
            },
        },
        "Money": {
            "type": "object",
            "required": ["amount", "currency"],
            "properties": {
                "amount": {"type": "integer", "minimum": 0, "exclusiveMinimum": True},
                "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "example": "EUR"},
            },
        },
        "Address": {
            "type": "object",
            "properties": {
                k: {"type": "string", "nullable": True}
                for k in ("line1", "line2", "city", "zip", "country")
            },
        },
        "Error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"$ref": "#/components/schemas/Error"}},
            },
        },
        "Folder": {  # a self-recursive tree
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/components/schemas/Folder"}},
            },
        },
        "Page": {
            "type": "object",
            "properties": {
                "next": {"type": "string", "nullable": True},
                "total": {"type": "integer"},
            },
        },
    }
    parameters = {
        "Limit": {
            "name": "limit",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
        },
        "Cursor": {"name": "cursor", "in": "query", "schema": {"type": "string"}},
        "Expand": {
            "name": "expand",
            "in": "query",
            "style": "form",
            "explode": False,
            "schema": {"type": "array", "items": {"type": "string"}},
        },
        "RequestId": {
            "name": "X-Request-Id",
            "in": "header",
            "schema": {"type": "string", "format": "uuid"},
        },
        "Filter": {
            "name": "filter",
            "in": "query",
            "style": "deepObject",
            "explode": True,
            "schema": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    responses = {
        "NotFound": {
            "description": "not found",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        },
        "BadRequest": {
            "description": "bad",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        },
    }
    paths: dict[str, Any] = {}
    status = ["draft", "active", "suspended", "archived"]
    for i in range(resources):
        name = f"Resource{i}"
        other = f"Resource{(i + 1) % resources}"
        ref = f"#/components/schemas/{name}"
        schemas[f"{name}Input"] = {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 200},
                "description": {"type": "string", "nullable": True},
                "status": {"type": "string", "enum": status},
                "price": {"$ref": "#/components/schemas/Money"},
                "address": {"$ref": "#/components/schemas/Address"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
                "folder": {"$ref": "#/components/schemas/Folder"},
                f"{other[0].lower()}{other[1:]}Id": {"type": "string", "format": "uuid"},
            },
        }
        schemas[name] = {
            "allOf": [
                {"$ref": f"#/components/schemas/{name}Input"},
                {"$ref": "#/components/schemas/Timestamps"},
                {
                    "type": "object",
                    "properties": {
                        "id": {"$ref": "#/components/schemas/Id"},
                        # every 10th resource links to the next one, which links back: cycles
                        **(
                            {"related": {"$ref": f"#/components/schemas/{other}"}}
                            if i % 10 == 0
                            else {}
                        ),
                    },
                },
            ]
        }
        schemas[f"{name}List"] = {
            "allOf": [
                {"$ref": "#/components/schemas/Page"},
                {
                    "type": "object",
                    "properties": {"items": {"type": "array", "items": {"$ref": ref}}},
                },
            ]
        }
        base = f"/v1/resource-{i}s"

        def ok(s: str) -> dict[str, Any]:
            return {"description": "ok", "content": {"application/json": {"schema": {"$ref": s}}}}

        body = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{name}Input"}}
            },
        }
        idp = {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "format": "uuid"},
        }
        common = [{"$ref": "#/components/parameters/RequestId"}]
        paths[base] = {
            "get": {
                "operationId": f"list{name}s",
                "summary": f"List {name} objects",
                "parameters": [
                    *common,
                    *(
                        {"$ref": f"#/components/parameters/{p}"}
                        for p in ("Limit", "Cursor", "Expand", "Filter")
                    ),
                ],
                "responses": {
                    "200": ok(f"#/components/schemas/{name}List"),
                    "400": {"$ref": "#/components/responses/BadRequest"},
                },
            },
            "post": {
                "operationId": f"create{name}",
                "summary": f"Create a {name}",
                "parameters": common,
                "requestBody": body,
                "responses": {"201": ok(ref), "400": {"$ref": "#/components/responses/BadRequest"}},
            },
        }
        paths[f"{base}/{{id}}"] = {
            "parameters": [idp],
            "get": {
                "operationId": f"get{name}",
                "parameters": [*common, {"$ref": "#/components/parameters/Expand"}],
                "responses": {"200": ok(ref), "404": {"$ref": "#/components/responses/NotFound"}},
            },
            "put": {
                "operationId": f"replace{name}",
                "requestBody": body,
                "responses": {"200": ok(ref), "404": {"$ref": "#/components/responses/NotFound"}},
            },
            "patch": {
                "operationId": f"update{name}",
                "requestBody": {
                    "content": {
                        "application/merge-patch+json": {
                            "schema": {"$ref": f"#/components/schemas/{name}Input"}
                        }
                    }
                },
                "responses": {"200": ok(ref)},
            },
            "delete": {
                "operationId": f"delete{name}",
                "responses": {"204": {"description": "deleted"}},
            },
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Synthetic SaaS API", "version": "1.0.0"},
        "servers": [{"url": "https://api.example.com"}],
        "paths": paths,
        "components": {"schemas": schemas, "parameters": parameters, "responses": responses},
    }


# ------------------------------------------------------------------------ kubernetes

CLUSTER_SCOPED = {
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "StorageClass",
    "CustomResourceDefinition",
    "APIService",
    "PriorityClass",
    "CSIDriver",
    "CSINode",
    "VolumeAttachment",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "RuntimeClass",
    "IngressClass",
    "FlowSchema",
    "PriorityLevelConfiguration",
    "CertificateSigningRequest",
    "ComponentStatus",
    "DeviceClass",
    "ClusterTrustBundle",
    "IPAddress",
    "ServiceCIDR",
    "TokenReview",
    "SelfSubjectReview",
    "SubjectAccessReview",
    "SelfSubjectAccessReview",
    "SelfSubjectRulesReview",
    "StorageVersion",
    "VolumeAttributesClass",
}


def kubernetes() -> dict[str, Any] | None:
    """Real Kubernetes schemas (from kubernetes-validate) under Kubernetes' REST operations."""
    try:
        import kubernetes_validate  # type: ignore[import-not-found]
    except ImportError:
        return None
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    versions = sorted(
        (d for d in root.glob("v*-local") if (d / "_definitions.json").exists()),
        key=lambda d: tuple(int(x) for x in d.name[1:].split("-")[0].split(".")),
    )
    if not versions:
        return None
    raw = (versions[-1] / "_definitions.json").read_text()
    defs = json.loads(raw.replace('"#/$defs/', '"#/components/schemas/'))["$defs"]
    p = lambda name, where="query", t="string": {"name": name, "in": where, "schema": {"type": t}}  # noqa: E731
    parameters = {
        "pretty": p("pretty"),
        "dryRun": p("dryRun"),
        "fieldManager": p("fieldManager"),
        "fieldValidation": p("fieldValidation"),
        "labelSelector": p("labelSelector"),
        "fieldSelector": p("fieldSelector"),
        "limit": p("limit", t="integer"),
        "continue": p("continue"),
        "watch": p("watch", t="boolean"),
        "resourceVersion": p("resourceVersion"),
        "timeoutSeconds": p("timeoutSeconds", t="integer"),
        "gracePeriodSeconds": p("gracePeriodSeconds", t="integer"),
        "propagationPolicy": p("propagationPolicy"),
        "force": p("force", t="boolean"),
        "namespace": {
            "name": "namespace",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
        },
        "name": {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
    }
    ref = lambda n: {"$ref": f"#/components/parameters/{n}"}  # noqa: E731
    schema = lambda n: {"$ref": f"#/components/schemas/{n}"}  # noqa: E731

    def ok(n: str) -> dict[str, Any]:
        return {
            "200": {"description": "OK", "content": {"application/json": {"schema": schema(n)}}}
        }

    status = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
    paths: dict[str, Any] = {}
    for def_name, definition in defs.items():
        gvks = definition.get("x-kubernetes-group-version-kind") or []
        if (
            len(gvks) != 1
            or def_name.endswith("List")
            or "metadata" not in definition.get("properties", {})
        ):
            continue
        gvk = gvks[0]
        group, version, kind = gvk["group"], gvk["version"], gvk["kind"]
        prefix = f"/api/{version}" if not group else f"/apis/{group}/{version}"
        plural = kind.lower() + ("es" if kind.endswith(("s", "x", "ch")) else "s")
        namespaced = kind not in CLUSTER_SCOPED
        collection = (
            f"{prefix}/namespaces/{{namespace}}/{plural}" if namespaced else f"{prefix}/{plural}"
        )
        item = f"{collection}/{{name}}"
        tag = "".join(w.capitalize() for w in [*group.split(".")[0].split("-"), version]) or "Core"
        scope = "Namespaced" if namespaced else ""
        list_def = def_name + "List" if def_name + "List" in defs else None
        scoped = [ref("namespace")] if namespaced else []
        body = {"required": True, "content": {"application/json": {"schema": schema(def_name)}}}
        patch_body = {
            "required": True,
            "content": {
                "application/merge-patch+json": {"schema": {"type": "object"}},
                "application/json-patch+json": {
                    "schema": {"type": "array", "items": {"type": "object"}}
                },
                "application/strategic-merge-patch+json": {"schema": {"type": "object"}},
                "application/apply-patch+yaml": {"schema": {"type": "object"}},
            },
        }
        paths[collection] = {
            "parameters": [*scoped, ref("pretty")],
            "get": {
                "operationId": f"list{tag}{scope}{kind}",
                "description": f"list or watch objects of kind {kind}",
                "parameters": [
                    ref(n)
                    for n in (
                        "labelSelector",
                        "fieldSelector",
                        "limit",
                        "continue",
                        "watch",
                        "resourceVersion",
                        "timeoutSeconds",
                    )
                ],
                "responses": ok(list_def) if list_def else {"200": {"description": "OK"}},
            },
            "post": {
                "operationId": f"create{tag}{scope}{kind}",
                "description": f"create a {kind}",
                "parameters": [ref("dryRun"), ref("fieldManager"), ref("fieldValidation")],
                "requestBody": body,
                "responses": {**ok(def_name), "201": ok(def_name)["200"]},
            },
            "delete": {
                "operationId": f"deletecollection{tag}{scope}{kind}",
                "description": f"delete collection of {kind}",
                "parameters": [
                    ref(n)
                    for n in (
                        "labelSelector",
                        "fieldSelector",
                        "gracePeriodSeconds",
                        "propagationPolicy",
                        "dryRun",
                    )
                ],
                "responses": ok(status),
            },
        }
        paths[item] = {
            "parameters": [ref("name"), *scoped, ref("pretty")],
            "get": {
                "operationId": f"read{tag}{scope}{kind}",
                "description": f"read the specified {kind}",
                "responses": ok(def_name),
            },
            "put": {
                "operationId": f"replace{tag}{scope}{kind}",
                "description": f"replace the specified {kind}",
                "parameters": [ref("dryRun"), ref("fieldManager")],
                "requestBody": body,
                "responses": ok(def_name),
            },
            "patch": {
                "operationId": f"patch{tag}{scope}{kind}",
                "description": f"partially update the specified {kind}",
                "parameters": [ref("dryRun"), ref("fieldManager"), ref("force")],
                "requestBody": patch_body,
                "responses": ok(def_name),
            },
            "delete": {
                "operationId": f"delete{tag}{scope}{kind}",
                "description": f"delete a {kind}",
                "parameters": [ref("gracePeriodSeconds"), ref("propagationPolicy"), ref("dryRun")],
                "responses": ok(status),
            },
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Kubernetes ({versions[-1].name})", "version": versions[-1].name},
        "servers": [{"url": "https://kubernetes.default.svc"}],
        "paths": paths,
        "components": {"schemas": defs, "parameters": parameters},
    }


# ------------------------------------------------------------------------ measuring


def median_ms(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def measure(name: str, raw: bytes, hint: str, runs: int) -> dict[str, Any]:
    parse_ms, doc = median_ms(lambda: parse_document(raw, hint), runs)
    # convert() never mutates its input, but give each run a fresh copy anyway.
    docs = [copy.deepcopy(doc) for _ in range(runs)]
    convert_ms, conv = median_ms(lambda: convert(docs.pop()), runs)
    listing = orjson.dumps({"tools": conv.tools})
    largest = max((len(orjson.dumps(t)) for t in conv.tools), default=0)
    return {
        "spec": name,
        "format": "yaml" if hint.endswith((".yaml", ".yml")) else "json",
        "KiB": len(raw) / 1024,
        "ops": conv.total_operations,
        "tools": len(conv.tools),
        "parse_ms": parse_ms,
        "convert_ms": convert_ms,
        "list_KiB": len(listing) / 1024,
        "largest_tool_KiB": largest / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--ops", type=int, default=500, help="operations in the synthetic document")
    parser.add_argument("--spec", action="append", default=[], help="also measure this file")
    parser.add_argument("--json", action="store_true", help="print rows as JSON")
    args = parser.parse_args()

    inputs: list[tuple[str, bytes, str]] = []
    inputs.append(("petstore", (ROOT / "examples" / "petstore.json").read_bytes(), "petstore.json"))
    synth = synthetic(args.ops)
    inputs.append(("synthetic", orjson.dumps(synth), "synthetic.json"))
    inputs.append(("synthetic", yaml.safe_dump(synth, sort_keys=False).encode(), "synthetic.yaml"))
    k8s = kubernetes()
    if k8s is not None:
        inputs.append(("kubernetes", orjson.dumps(k8s), "kubernetes.json"))
    else:
        print(
            "(kubernetes-validate is not installed: skipping the Kubernetes document)",
            file=sys.stderr,
        )
    for path in args.spec:
        inputs.append((Path(path).name, Path(path).read_bytes(), path))

    rows = [measure(name, raw, hint, args.runs) for name, raw, hint in inputs]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    header = f"{'spec':<12} {'fmt':<5} {'size KiB':>9} {'ops':>6} {'tools':>6} {'parse ms':>9} {'convert ms':>11} {'tools/list KiB':>15} {'largest tool KiB':>17}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['spec']:<12} {r['format']:<5} {r['KiB']:>9.0f} {r['ops']:>6} {r['tools']:>6} "
            f"{r['parse_ms']:>9.1f} {r['convert_ms']:>11.1f} {r['list_KiB']:>15.0f} {r['largest_tool_KiB']:>17.1f}"
        )
    print(f"\nmedian of {args.runs} runs; Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
