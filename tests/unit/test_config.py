"""Tests for mcpmux.config: schema defaults, loading, interpolation and error quality."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcpmux.config import (
    ConfigError,
    GatewayConfig,
    HttpSpec,
    SseSpec,
    StdioSpec,
    UrlSpec,
    config_from_dict,
    interpolate,
    load_config,
    parse_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mcpmux.yaml"


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    """The ConfigError messages parse_config raises for ``text``."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.yaml", env or {})
    assert info.value.source == "test.yaml"
    return info.value.errors


def only_error(text: str, env: dict[str, str] | None = None) -> str:
    errors = errors_of(text, env)
    assert len(errors) == 1, errors
    return errors[0]


# ------------------------------------------------------------------------ defaults


def test_empty_document_gives_all_defaults() -> None:
    for text in ("", "\n", "# just a comment\n", "---\n", "{}"):
        cfg = parse_config(text, env={})
        assert cfg == GatewayConfig(), text
    cfg = GatewayConfig()
    assert (cfg.listen.host, cfg.listen.port) == ("127.0.0.1", 8080)
    assert (cfg.admin.host, cfg.admin.port, cfg.admin.enabled) == ("127.0.0.1", 19000, True)
    assert cfg.prefix == "conditional"
    assert cfg.allowed_origins == []
    assert cfg.targets == []
    assert cfg.limits.max_body_bytes == 4 * 1024 * 1024
    assert cfg.limits.session_idle_timeout == 1800.0
    assert cfg.limits.max_sessions == 10000


def test_target_field_defaults() -> None:
    cfg = parse_config("targets:\n  - name: t\n    stdio:\n      command: run\n", env={})
    target = cfg.targets[0]
    assert target.timeout == 10.0
    assert isinstance(target.spec, StdioSpec)
    assert target.spec.args == [] and target.spec.env == {}
    assert target.spec.cwd is None and target.spec.inherit_env is True


def test_empty_value_means_default() -> None:
    text = "listen:\nlimits:\ntargets:\n  - name: t\n    stdio:\n      command: x\n      args:\n"
    cfg = parse_config(text, env={})
    assert cfg.listen.port == 8080
    assert cfg.limits.max_sessions == 10000
    assert cfg.targets[0].spec == StdioSpec(command="x")


def test_defaults_are_not_shared_between_instances() -> None:
    a, b = GatewayConfig(), GatewayConfig()
    a.targets.append(
        config_from_dict({"targets": [{"name": "x", "http": {"url": "http://h"}}]}).targets[0]
    )
    a.listen.port = 1
    assert b.targets == [] and b.listen.port == 8080


# ----------------------------------------------------------------- full documents


def test_example_file_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MCPMUX_PORT", "TIME_LOG_LEVEL", "GITHUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    cfg = load_config(EXAMPLE)
    assert [(t.name, t.kind) for t in cfg.targets] == [
        ("time", "stdio"),
        ("github", "http"),
        ("legacy-search", "sse"),
        ("somewhere", "url"),
    ]
    time, github, legacy, somewhere = cfg.targets
    assert isinstance(somewhere.spec, UrlSpec) and somewhere.spec.url == "http://127.0.0.1:9200/mcp"
    assert isinstance(time.spec, StdioSpec)
    assert time.spec.command == "mcp-server-time"
    assert time.spec.env == {"LOG_LEVEL": "info"}
    assert isinstance(github.spec, HttpSpec) and not isinstance(github.spec, SseSpec)
    assert github.spec.headers == {"Authorization": "Bearer replace-me"}
    assert isinstance(legacy.spec, SseSpec)
    assert cfg.listen.port == 8080
    assert cfg.allowed_origins == ["https://my-dashboard.example.com"]


def test_example_file_takes_values_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPMUX_PORT", "9123")
    monkeypatch.setenv("GITHUB_TOKEN", "s3cret")
    cfg = load_config(str(EXAMPLE))
    assert cfg.listen.port == 9123
    assert cfg.targets[1].spec.headers == {"Authorization": "Bearer s3cret"}  # type: ignore[union-attr]


def test_full_yaml_document() -> None:
    text = """
listen: {host: 0.0.0.0, port: 0}
admin: {enabled: false, port: 19001}
prefix: always
allowed_origins: ["*", "http://localhost:3000"]
limits: {max_body_bytes: 1024, session_idle_timeout: 2.5, max_sessions: 3}
targets:
  - name: a-1
    stdio: {command: python, args: [-m, srv, --port, 8080], env: {DEBUG: 1}, cwd: /tmp,
            inherit_env: false}
    timeout: 0.5
"""
    cfg = parse_config(text, env={})
    assert (cfg.listen.host, cfg.listen.port) == ("0.0.0.0", 0)
    assert cfg.admin.enabled is False and cfg.admin.port == 19001
    assert cfg.prefix == "always"
    assert cfg.allowed_origins == ["*", "http://localhost:3000"]
    assert cfg.limits.model_dump() == {
        "max_body_bytes": 1024,
        "session_idle_timeout": 2.5,
        "max_sessions": 3,
        "max_sessions_per_client": 100,
        "unused_session_timeout": 60.0,
        "ready_grace": 2.0,
        "page_size": 0,
        "drain_timeout": 30.0,
        "connect_concurrency": 8,
        "max_client_processes": 8,
        "client_process_idle_timeout": 300.0,
        "call_timeout": 300.0,
        "max_response_bytes": 16 * 1024 * 1024,
        "max_result_bytes": 1024 * 1024,
        "result_ttl": 600.0,
        "max_result_memory_bytes": 64 * 1024 * 1024,
        "max_result_disk_bytes": 1024 * 1024 * 1024,
        "max_uri_bytes": 8 * 1024,
        "max_header_bytes": 64 * 1024,
        "header_timeout": 10.0,
        "keepalive_timeout": 5.0,
        "max_connections": 1000,
    }
    spec = cfg.targets[0].spec
    assert isinstance(spec, StdioSpec)
    # Numbers are natural in YAML args/env; they must arrive as strings.
    assert spec.args == ["-m", "srv", "--port", "8080"]
    assert spec.env == {"DEBUG": "1"}
    assert spec.cwd == "/tmp" and spec.inherit_env is False
    assert cfg.targets[0].timeout == 0.5


def test_json_input() -> None:
    data = {
        "listen": {"port": 9000},
        "targets": [{"name": "remote", "http": {"url": "https://mcp.example.com/mcp"}}],
    }
    for text in (json.dumps(data), json.dumps(data, indent=2), json.dumps(data, indent="\t")):
        cfg = parse_config(text, env={})
        assert cfg.listen.port == 9000, text
        assert cfg.targets[0].kind == "http"
        assert cfg.targets[0].spec.url == "https://mcp.example.com/mcp"  # type: ignore[union-attr]


def test_json_errors_have_lines() -> None:
    text = json.dumps({"listen": {"port": 70000}}, indent="\t")
    assert only_error(text) == "listen.port: must be at most 65535, got 70000 (line 3)"


def test_kind_and_spec_per_transport() -> None:
    cfg = config_from_dict(
        {
            "targets": [
                {"name": "s", "stdio": {"command": "x"}},
                {"name": "h", "http": {"url": "http://h/mcp"}},
                {"name": "e", "sse": {"url": "http://h/sse", "headers": {"X-K": "v"}}},
            ]
        }
    )
    kinds = [(t.kind, type(t.spec)) for t in cfg.targets]
    assert kinds == [("stdio", StdioSpec), ("http", HttpSpec), ("sse", SseSpec)]
    assert cfg.targets[2].spec.headers == {"X-K": "v"}  # type: ignore[union-attr]


# ------------------------------------------------------------------ interpolation


def test_interpolate_set_default_and_escape() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert interpolate("x=${A}", env) == "x=1"
    assert interpolate("${A:-2}", env) == "1"
    assert interpolate("${B:-2}", env) == "2"
    assert interpolate("${EMPTY:-fallback}", env) == "fallback"  # shell ':-' semantics
    assert interpolate("${B:-}", env) == ""
    assert interpolate("$${A} and $${NOT_SET}", env) == "${A} and ${NOT_SET}"
    assert interpolate("cost: $5, $A", env) == "cost: $5, $A"  # only ${...} is special


def test_interpolate_missing_variables_reported_with_lines() -> None:
    with pytest.raises(ConfigError) as info:
        interpolate("a: ${A}\nb: ok\nc: ${MISSING_ONE}\nd: ${MISSING_TWO}\n", {"A": "x"})
    errors = info.value.errors
    assert len(errors) == 2
    assert "'MISSING_ONE'" in errors[0] and errors[0].endswith("(line 3)")
    assert "'MISSING_TWO'" in errors[1] and errors[1].endswith("(line 4)")
    assert info.value.source == "<string>"


def test_interpolate_rejects_malformed_references() -> None:
    for text in ("${}", "${1ABC}", "${A:?err}", "${UNCLOSED"):
        with pytest.raises(ConfigError) as info:
            interpolate(text, {"A": "x", "UNCLOSED": "y"})
        assert "invalid variable reference" in info.value.errors[0], text


def test_config_values_interpolated() -> None:
    text = """listen:
  host: ${HOST}
  port: ${PORT:-9000}
targets:
  - name: t
    http:
      url: https://${API_HOST}/mcp
      headers:
        Authorization: "Bearer ${TOKEN}"
        X-Literal: $${NOT_A_VAR}
"""
    cfg = parse_config(text, env={"HOST": "0.0.0.0", "API_HOST": "api.example", "TOKEN": "t0k"})
    assert cfg.listen.host == "0.0.0.0"
    assert cfg.listen.port == 9000
    spec = cfg.targets[0].spec
    assert isinstance(spec, HttpSpec)
    assert spec.url == "https://api.example/mcp"
    assert spec.headers == {"Authorization": "Bearer t0k", "X-Literal": "${NOT_A_VAR}"}


def test_interpolated_values_are_not_reparsed_as_yaml() -> None:
    # Values that look like YAML numbers, booleans or structure must arrive verbatim.
    env = {"SECRET": "0755", "FLAG": "yes", "TRICKY": "a: b # c\n- d"}
    text = "targets:\n  - name: t\n    stdio:\n      command: x\n      env:\n"
    text += "        A: ${SECRET}\n        B: ${FLAG}\n        C: ${TRICKY}\n"
    spec = parse_config(text, env=env).targets[0].spec
    assert isinstance(spec, StdioSpec)
    assert spec.env == {"A": "0755", "B": "yes", "C": "a: b # c\n- d"}


def test_comments_are_not_interpolated() -> None:
    cfg = parse_config("# token: ${UNSET_IN_COMMENT}\nprefix: never  # ${ALSO_UNSET}\n", env={})
    assert cfg.prefix == "never"


def test_missing_variable_error_names_field_and_line() -> None:
    text = "listen:\n  port: 1\ntargets:\n  - name: t\n    http:\n      url: ${UPSTREAM_URL}\n"
    error = only_error(text)
    assert error.startswith("targets[0].http.url: environment variable 'UPSTREAM_URL' is not set")
    assert error.endswith("(line 6)")


def test_missing_variable_in_literal_block_points_at_its_line() -> None:
    text = "targets:\n  - name: t\n    stdio:\n      command: sh\n      args:\n        - |\n"
    text += "          echo one\n          echo ${NOPE}\n"
    error = only_error(text)
    assert "'NOPE'" in error and error.endswith("(line 8)")


def test_escape_is_not_expanded_twice_through_aliases() -> None:
    text = "targets:\n  - name: t\n    stdio:\n      command: &c run-$${X}\n"
    text += "      args: [*c, *c]\n"
    spec = parse_config(text, env={"X": "expanded"}).targets[0].spec
    assert isinstance(spec, StdioSpec)
    assert spec.command == "run-${X}"
    assert spec.args == ["run-${X}", "run-${X}"]


def test_parse_config_uses_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPMUX_TEST_HOST", "10.1.2.3")
    assert parse_config("listen: {host: '${MCPMUX_TEST_HOST}'}").listen.host == "10.1.2.3"


# -------------------------------------------------------------- validation errors


def test_bad_target_name() -> None:
    text = "targets:\n  - name: ok\n    stdio: {command: x}\n  - name: Bad_Name\n"
    text += "    stdio: {command: x}\n"
    error = only_error(text)
    assert error.startswith(
        "targets[1].name: must be a DNS-1123 label (lower-case letters, digits, '-'"
    )
    assert "'Bad_Name'" in error
    assert error.endswith("(line 4)")


@pytest.mark.parametrize("name", ["-a", "a-", "A", "a_b", "a.b", "", "x" * 64])
def test_invalid_target_names_rejected(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"targets": [{"name": name, "stdio": {"command": "x"}}]})
    assert info.value.errors[0].startswith("targets[0].name: must be a DNS-1123 label")


@pytest.mark.parametrize("name", ["a", "0", "a-b-9", "x" * 63])
def test_valid_target_names_accepted(name: str) -> None:
    cfg = config_from_dict({"targets": [{"name": name, "stdio": {"command": "x"}}]})
    assert cfg.targets[0].name == name


def test_two_kinds_is_an_error() -> None:
    text = "targets:\n  - name: a\n    stdio: {command: x}\n"
    text += "  - name: both\n    stdio: {command: x}\n    http: {url: 'http://h'}\n"
    error = only_error(text)
    assert error.startswith("targets[1]: target 'both': set exactly one of stdio, http, sse")
    assert "stdio, http)" in error
    assert error.endswith("(line 4)")


def test_no_kind_is_an_error() -> None:
    error = only_error("targets:\n  - name: empty\n    timeout: 3\n")
    assert error.startswith("targets[0]: target 'empty': set exactly one of stdio, http, sse")
    assert "found: none" in error
    assert error.endswith("(line 2)")


@pytest.mark.parametrize(
    "url",
    ["ftp://host/x", "localhost:8080", "http://", "https:///path", "http://h:99999", "http://a b"],
)
def test_bad_url(url: str) -> None:
    text = f"targets:\n  - name: t\n    http:\n      url: '{url}'\n"
    error = only_error(text)
    assert error.startswith("targets[0].http.url: must be an http:// or https:// URL with a host")
    assert error.endswith("(line 4)")


def test_bad_sse_url_names_sse_field() -> None:
    error = only_error("targets:\n- name: t\n  sse:\n    url: ws://h/sse\n")
    assert error.startswith("targets[0].sse.url: must be an http:// or https:// URL")
    assert error.endswith("(line 4)")


def test_duplicate_target_names() -> None:
    text = "targets:\n  - name: dup\n    stdio: {command: x}\n  - name: other\n"
    text += "    stdio: {command: x}\n  - name: dup\n    http: {url: 'http://h'}\n"
    error = only_error(text)
    assert error == (
        "targets[2].name: duplicate target name 'dup' (already used by targets[0]) (line 6)"
    )


def test_unknown_field_typo_suggests_the_right_name() -> None:
    assert only_error("listen: {port: 1}\ntargts: []\n") == (
        "targts: unknown field (did you mean 'targets'?) (line 2)"
    )


def test_unknown_nested_field_lists_valid_fields() -> None:
    text = "targets:\n  - name: t\n    stdio:\n      command: x\n      bogus: 1\n"
    error = only_error(text)
    assert error.startswith("targets[0].stdio.bogus: unknown field (expected one of: command,")
    assert error.endswith("(line 5)")


@pytest.mark.parametrize("port", ["-1", "65536", "100000"])
def test_port_out_of_range(port: str) -> None:
    error = only_error(f"listen:\n  host: 127.0.0.1\n  port: {port}\n")
    assert error.startswith("listen.port: must be ")
    assert port in error
    assert error.endswith("(line 3)")


def test_wrong_types_are_readable() -> None:
    text = "listen: 5\nadmin:\n  enabled: maybe\nprefix: sometimes\ntargets:\n  - name: t\n"
    text += "    stdio: just-a-string\n    timeout: soon\n"
    assert errors_of(text) == [
        "listen: expected a mapping, got 5 (line 1)",
        "admin.enabled: expected true or false, got 'maybe' (line 3)",
        "prefix: must be one of 'conditional', 'always' or 'never', got 'sometimes' (line 4)",
        "targets[0].stdio: expected a mapping, got 'just-a-string' (line 7)",
        "targets[0].timeout: expected a number, got 'soon' (line 8)",
    ]


def test_numeric_limits() -> None:
    text = "limits:\n  max_body_bytes: 0\n  session_idle_timeout: -1\n  max_sessions: .inf\n"
    text += "targets:\n  - name: t\n    stdio: {command: x}\n    timeout: 0\n"
    errors = errors_of(text)
    assert errors[0] == "limits.max_body_bytes: must be greater than 0, got 0 (line 2)"
    assert errors[1].startswith("limits.session_idle_timeout: must be greater than 0")
    assert errors[2].startswith("limits.max_sessions: ") and errors[2].endswith("(line 4)")
    assert errors[3] == "targets[0].timeout: must be greater than 0, got 0 (line 8)"


def test_empty_command_rejected() -> None:
    error = only_error("targets:\n  - name: t\n    stdio:\n      command: '  '\n")
    assert error == "targets[0].stdio.command: must not be empty (line 4)"


def test_missing_required_field() -> None:
    error = only_error("targets:\n  - stdio: {command: x}\n")
    assert error == "targets[0].name: required field is missing (line 2)"


def test_allowed_origins_must_be_origins() -> None:
    text = "allowed_origins:\n  - '*'\n  - http://ok.example:8080\n  - https://x.example/\n"
    error = only_error(text)
    assert error.startswith("allowed_origins[2]: 'https://x.example/' is not an origin")
    assert error.endswith("(line 4)")


def test_header_values_cannot_inject_lines() -> None:
    text = "targets:\n  - name: t\n    http:\n      url: http://h\n"
    text += '      headers: {X-A: "v\\r\\nX-Evil: 1"}\n'
    error = only_error(text)
    assert error.startswith("targets[0].http.headers: header 'X-A'")
    assert error.endswith("(line 5)")


def test_all_errors_reported_in_line_order() -> None:
    text = "targts: []\nlisten:\n  port: 70000\n  hots: x\n"
    assert errors_of(text) == [
        "targts: unknown field (did you mean 'targets'?) (line 1)",
        "listen.port: must be at most 65535, got 70000 (line 3)",
        "listen.hots: unknown field (did you mean 'host'?) (line 4)",
    ]


def test_duplicate_yaml_keys_are_errors() -> None:
    error = only_error("listen:\n  port: 80\n  port: 81\n")
    assert error == "listen.port: key appears more than once (line 3)"


# ------------------------------------------------------------------ YAML problems


def test_yaml_syntax_error_has_line_and_column() -> None:
    error = only_error("listen:\n  host: a\n  port: 1: 2\n")
    assert error.startswith("YAML syntax error: mapping values are not allowed here")
    assert error.endswith("(line 3, column 10)")


def test_unclosed_flow_mapping() -> None:
    error = only_error("listen: {port: 1\nprefix: always\n")
    assert error.startswith("YAML syntax error:")
    assert "(line 2," in error


def test_unquoted_reference_in_flow_collection_gets_a_hint() -> None:
    error = only_error("targets:\n  - name: t\n    stdio: {command: x, env: {A: ${X}}}\n")
    assert "must be quoted" in error and "(line 3," in error


def test_unknown_yaml_tag() -> None:
    error = only_error("prefix: !python/name:os.system never\n")
    assert error.startswith("YAML syntax error: could not determine a constructor")
    assert "(line 1," in error


@pytest.mark.parametrize(
    ("text", "got"), [("- a\n- b\n", "a list"), ("just text\n", "'just text'"), ("42\n", "42")]
)
def test_top_level_must_be_a_mapping(text: str, got: str) -> None:
    error = only_error(text)
    assert error == f"the top level must be a mapping of settings, got {got} (line 1)"


# ------------------------------------------------------------ files, dicts, errors


def test_load_config_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.source == str(missing)
    assert info.value.errors == ["configuration file not found"]
    assert str(missing) in str(info.value)


def test_load_config_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert "directory" in info.value.errors[0]


def test_load_config_reads_file_and_reports_its_name(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("\ufeffprefix: never\n", encoding="utf-8")  # a BOM is tolerated
    assert load_config(good).prefix == "never"
    bad = tmp_path / "bad.yaml"
    bad.write_text("prefix: sometimes\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(info.value).startswith(f"{bad}: 1 error(s)\n  - prefix: must be one of")


def test_config_from_dict() -> None:
    cfg = config_from_dict(
        {"listen": {"port": 0}, "targets": [{"name": "demo", "stdio": {"command": "python"}}]}
    )
    assert cfg.listen.port == 0
    assert cfg.targets[0].kind == "stdio"
    # No interpolation for programmatic configs.
    cfg = config_from_dict({"targets": [{"name": "d", "stdio": {"command": "${X}"}}]})
    assert cfg.targets[0].spec.command == "${X}"  # type: ignore[union-attr]


def test_config_from_dict_errors_have_paths_but_no_lines() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"targets": [{"name": "a", "http": {"url": "nope"}}], "extra": 1})
    errors = sorted(info.value.errors)
    assert len(errors) == 2
    assert errors[0].startswith("extra: unknown field (expected one of: listen,")
    assert errors[1].startswith("targets[0].http.url: must be an http:// or https:// URL")
    assert not any("(line" in e for e in errors)


def test_config_from_dict_rejects_non_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict([1, 2])  # type: ignore[arg-type]
    assert "must be a mapping" in info.value.errors[0]


def test_config_error_str_format() -> None:
    err = ConfigError(["first (line 1)", "second (line 2)"], "conf.yaml")
    assert str(err) == "conf.yaml: 2 error(s)\n  - first (line 1)\n  - second (line 2)"
    assert err.errors == ["first (line 1)", "second (line 2)"]
    assert ConfigError(["x"]).source == "<string>"


def test_fallback_target_must_name_a_target() -> None:
    targets = [{"name": "a", "http": {"url": "http://127.0.0.1:1/mcp"}}]
    assert config_from_dict({"targets": targets, "fallback_target": "a"}).fallback_target == "a"
    with pytest.raises(ConfigError, match="fallback_target: 'b' names no target \\(targets: a\\)"):
        config_from_dict({"targets": targets, "fallback_target": "b"})
