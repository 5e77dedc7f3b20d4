"""The ``openapi`` target kind in the configuration: fields, defaults and errors."""

from __future__ import annotations

import pytest

from mcpmux.config import ConfigError, OpenApiSpec, config_from_dict, parse_config


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml", env or {})
    return info.value.errors


def only_error(text: str, env: dict[str, str] | None = None) -> str:
    errors = errors_of(text, env)
    assert len(errors) == 1, errors
    return errors[0]


def test_minimal_openapi_target() -> None:
    cfg = parse_config(
        "targets:\n  - name: petstore\n    openapi: {spec: examples/petstore.json}\n", env={}
    )
    target = cfg.targets[0]
    assert target.kind == "openapi"
    assert isinstance(target.spec, OpenApiSpec)
    assert target.spec == OpenApiSpec(spec="examples/petstore.json")
    spec = target.spec
    assert spec.base_url is None
    assert spec.headers == {} and spec.include == [] and spec.exclude == []
    assert spec.timeout == 30.0
    assert target.timeout == 10.0  # loading the document is bounded by the target's timeout


def test_full_openapi_target_with_interpolation() -> None:
    text = """
targets:
  - name: petstore
    openapi:
      spec: https://petstore3.swagger.io/api/v3/openapi.json
      base_url: http://127.0.0.1:8081/api/v3
      headers: {api_key: "${PETSTORE_KEY}", X-Version: 3}
      include: [getPetById, "find*"]
      exclude: [findPetsByTags]
      timeout: 2.5
"""
    spec = parse_config(text, env={"PETSTORE_KEY": "s3cret"}).targets[0].spec
    assert isinstance(spec, OpenApiSpec)
    assert spec.spec == "https://petstore3.swagger.io/api/v3/openapi.json"
    assert spec.base_url == "http://127.0.0.1:8081/api/v3"
    assert spec.headers == {"api_key": "s3cret", "X-Version": "3"}
    assert spec.include == ["getPetById", "find*"]
    assert spec.exclude == ["findPetsByTags"]
    assert spec.timeout == 2.5


def test_openapi_is_one_of_the_kinds() -> None:
    text = (
        "targets:\n  - name: both\n    http: {url: 'http://h/mcp'}\n    openapi: {spec: a.json}\n"
    )
    error = only_error(text)
    assert error.startswith(
        "targets[0]: target 'both': set exactly one of stdio, http, sse, openapi"
    )
    assert "(found: http, openapi)" in error
    assert error.endswith("(line 2)")
    error = only_error("targets:\n  - name: none\n")
    assert "set exactly one of stdio, http, sse, openapi, url (found: none)" in error


@pytest.mark.parametrize(
    ("openapi", "message"),
    [
        ("{}", "targets[0].openapi.spec: required field is missing (line 3)"),
        ("{spec: ''}", "targets[0].openapi.spec: must not be empty (line 3)"),
        ("{spec: '  '}", "targets[0].openapi.spec: must not be empty (line 3)"),
        (
            "{spec: 'ftp://h/openapi.json'}",
            "targets[0].openapi.spec: must be a file path or an http:// or https:// URL, "
            "got 'ftp://h/openapi.json' (line 3)",
        ),
        (
            "{spec: a.json, base_url: localhost:8080}",
            "targets[0].openapi.base_url: must be an http:// or https:// URL with a host, "
            "got 'localhost:8080' (line 3)",
        ),
        (
            "{spec: a.json, headers: {'bad name': x}}",
            "targets[0].openapi.headers: invalid header name 'bad name' (line 3)",
        ),
        (
            "{spec: a.json, timeout: 0}",
            "targets[0].openapi.timeout: must be greater than 0, got 0 (line 3)",
        ),
        (
            "{spec: a.json, include: ['']}",
            "targets[0].openapi.include[0]: must not be empty (line 3)",
        ),
        (
            "{spec: a.json, exclude: x}",
            "targets[0].openapi.exclude: expected a list, got 'x' (line 3)",
        ),
        (
            "{spec: a.json, base-url: 'http://h'}",
            "targets[0].openapi.base-url: unknown field (did you mean 'base_url'?) (line 3)",
        ),
    ],
)
def test_openapi_field_errors(openapi: str, message: str) -> None:
    assert only_error(f"targets:\n  - name: t\n    openapi: {openapi}\n") == message


def test_header_values_cannot_smuggle_lines() -> None:
    text = 'targets:\n  - name: t\n    openapi:\n      spec: a.json\n      headers: {k: "${V}"}\n'
    error = only_error(text, {"V": "x\r\nEvil: 1"})
    assert error.startswith(
        "targets[0].openapi.headers: header 'k': value must not contain line breaks"
    )


def test_openapi_from_dict() -> None:
    cfg = config_from_dict(
        {"targets": [{"name": "api", "openapi": {"spec": "/abs/api.yaml", "timeout": 5}}]}
    )
    assert cfg.targets[0].kind == "openapi"
    assert cfg.targets[0].openapi == OpenApiSpec(spec="/abs/api.yaml", timeout=5)
    with pytest.raises(ConfigError) as info:
        config_from_dict({"targets": [{"name": "api", "openapi": {"spec": "a", "extra": 1}}]})
    assert info.value.errors == [
        "targets[0].openapi.extra: unknown field (expected one of: spec, base_url, headers, "
        "include, exclude, timeout)"
    ]
