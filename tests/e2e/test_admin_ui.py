"""The admin UI in a real browser (Debian's chromium driven by Playwright).

One gateway with three stdio targets: the ``clock`` demo, ``crashy`` (a server we can
kill) and the reference ``server-everything`` (elicitation, images). The tests use the
page as a person would: the overview, a live state change when a target's process
dies, the playground calling tools on two targets, an error result, and an
elicitation request answered in its form. Screenshots go to ``docs/img/``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.peers.bad_servers import stdio_target
from tests.support.conformance import server_everything_cmd
from tests.support.gateway import Gateway, run_gateway

from mcpmux.demo import demo_config

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed (scripts/setup.sh)")

IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
CLOCK = next(t for t in demo_config()["targets"] if t["name"] == "clock")
WAIT = 20_000  # ms


def _everything() -> dict[str, object]:
    cmd = server_everything_cmd("stdio")
    return {"name": "everything", "stdio": {"command": cmd[0], "args": cmd[1:]}, "timeout": 30}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    # clock's tools are curated (one hidden, one renamed); a virtual server shows clock's only.
    clock = {**CLOCK, "tools": {"exclude": ["sleep"], "rename": {"add": "plus"}}}
    config = {"targets": [clock, stdio_target("crashy", "crashy", timeout=5.0), _everything()],
              "servers": [{"name": "timekeeping", "tools": ["clock_*"]}]}
    with run_gateway(config, tmp_path_factory.mktemp("admin-ui")) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield pg
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def expect(locator: object) -> object:
    return playwright_api.expect(locator)  # type: ignore[arg-type]


def _row(page: object, name: str) -> object:
    return page.locator(f'tr[data-target="{name}"]')  # type: ignore[attr-defined]


def _playground(page: object, gw: Gateway) -> None:
    page.goto(gw.admin_url + "/")  # type: ignore[attr-defined]
    page.get_by_role("link", name="Playground").click()  # type: ignore[attr-defined]
    expect(page.locator("#conn-status")).to_have_text("connected", timeout=WAIT)  # type: ignore[attr-defined]


def _select_tool(page: object, name: str) -> None:
    page.get_by_role("tab", name=re.compile("^Tools")).click()  # type: ignore[attr-defined]
    page.get_by_role("option", name=re.compile(f"^{re.escape(name)}")).click()  # type: ignore[attr-defined]
    expect(page.locator("#selected-name")).to_have_text(name)  # type: ignore[attr-defined]


def _call(page: object) -> object:
    page.get_by_role("button", name=re.compile("^Call")).click()  # type: ignore[attr-defined]
    result = page.locator(".result:not(.running)")  # type: ignore[attr-defined]
    expect(result).to_be_visible(timeout=WAIT)
    return result


def test_overview_lists_every_target_with_its_state(gw: Gateway, page: object) -> None:
    page.goto(gw.admin_url + "/")  # type: ignore[attr-defined]
    for name, kind in (("clock", "stdio"), ("crashy", "stdio"), ("everything", "stdio")):
        row = _row(page, name)
        expect(row.locator(".badge")).to_have_text("ready", timeout=WAIT)  # type: ignore[attr-defined]
        expect(row.locator("td").nth(1)).to_contain_text(kind)  # type: ignore[attr-defined]
        expect(row.locator("td").nth(6)).to_have_text("config")  # type: ignore[attr-defined]
    expect(_row(page, "everything")).to_contain_text("17 tools")
    expect(page.locator("#stat-ready")).to_have_text("3/3")  # type: ignore[attr-defined]
    expect(page.get_by_text(gw.mcp_url)).to_be_visible()  # type: ignore[attr-defined]
    page.screenshot(path=str(IMG / "admin-overview.png"))  # type: ignore[attr-defined]


def test_overview_shows_a_dying_target_without_a_reload(gw: Gateway, page: object) -> None:
    page.goto(gw.admin_url + "/")  # type: ignore[attr-defined]
    row = _row(page, "crashy")
    expect(row.locator(".badge")).to_have_text("ready", timeout=WAIT)  # type: ignore[attr-defined]
    before = gw.targets()["crashy"]
    restarts = before["restarts"]
    expect(row.locator("td").nth(5)).to_have_text(str(restarts))  # type: ignore[attr-defined]
    expect(row.locator(".pid")).to_have_text(f"pid {before['pid']}")  # type: ignore[attr-defined]
    os.kill(before["pid"], signal.SIGKILL)
    # The page was not reloaded: the poll brings the restart count and the error in.
    expect(row.locator("td").nth(5)).to_have_text(str(restarts + 1), timeout=WAIT)  # type: ignore[attr-defined]
    expect(row.locator(".pid")).not_to_have_text(f"pid {before['pid']}", timeout=WAIT)  # type: ignore[attr-defined]
    expect(row.locator(".badge")).to_have_text("ready", timeout=WAIT)  # type: ignore[attr-defined]


def test_overview_says_what_curation_hid_and_renamed(gw: Gateway, page: object) -> None:
    page.goto(gw.admin_url + "/")  # type: ignore[attr-defined]
    curation = _row(page, "clock").locator(".curation")
    expect(curation.locator("summary")).to_have_text("1 hidden · 1 renamed", timeout=WAIT)  # type: ignore[attr-defined]
    curation.locator("summary").click()  # type: ignore[attr-defined]
    expect(curation).to_contain_text("sleep hidden: excluded by 'sleep'")
    expect(curation).to_contain_text("add shown as plus")
    expect(_row(page, "everything").locator(".curation")).to_have_count(0)  # type: ignore[attr-defined]


def test_playground_connects_to_a_chosen_virtual_server(gw: Gateway, page: object) -> None:
    _playground(page, gw)
    page.get_by_role("button", name="Disconnect").click()  # type: ignore[attr-defined]
    page.get_by_label("Server").select_option("timekeeping")  # type: ignore[attr-defined]
    expect(page.get_by_label("MCP endpoint", exact=True)).to_have_value(gw.admin_url + "/mcp/timekeeping")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Connect").click()  # type: ignore[attr-defined]
    expect(page.locator("#conn-status")).to_have_text("connected", timeout=WAIT)  # type: ignore[attr-defined]
    names = page.locator(".item-name")  # type: ignore[attr-defined]
    expect(names).to_have_count(2, timeout=WAIT)
    assert sorted(names.all_inner_texts()) == ["clock_now", "clock_plus"]  # type: ignore[attr-defined]
    _select_tool(page, "clock_now")
    expect(_call(page)).to_have_attribute("data-outcome", "ok")


def test_playground_calls_tools_on_two_targets(gw: Gateway, page: object) -> None:
    _playground(page, gw)
    tools = page.locator(".item-name")  # type: ignore[attr-defined]
    expect(tools.filter(has_text="clock_now")).to_be_visible()
    expect(tools.filter(has_text="everything_get-sum")).to_be_visible()
    expect(tools.filter(has_text="crashy_echo")).to_be_visible()

    _select_tool(page, "everything_get-sum")
    page.get_by_label("a", exact=True).fill("2")  # type: ignore[attr-defined]
    page.get_by_label("b", exact=True).fill("3")  # type: ignore[attr-defined]
    result = _call(page)
    expect(result).to_have_attribute("data-outcome", "ok")
    expect(result).to_contain_text("The sum of 2 and 3 is 5")

    _select_tool(page, "crashy_echo")
    page.get_by_label("text", exact=True).fill("hello from the browser")  # type: ignore[attr-defined]
    result = _call(page)
    expect(result).to_have_attribute("data-outcome", "ok")
    expect(result).to_contain_text("hello from the browser")

    _select_tool(page, "everything_get-tiny-image")
    result = _call(page)
    expect(result.locator("img.content-image")).to_be_visible()  # type: ignore[attr-defined]

    _select_tool(page, "everything_get-sum")
    page.get_by_label("a", exact=True).fill("20")  # type: ignore[attr-defined]
    page.get_by_label("b", exact=True).fill("22")  # type: ignore[attr-defined]
    expect(_call(page)).to_contain_text("is 42")
    page.screenshot(path=str(IMG / "admin-playground.png"))  # type: ignore[attr-defined]


def test_playground_marks_an_error_result(gw: Gateway, page: object) -> None:
    _playground(page, gw)
    _select_tool(page, "crashy_crash")
    result = _call(page)
    expect(result).to_have_attribute("data-outcome", "error")
    expect(result).to_have_class(re.compile("is-error"))
    expect(result).to_contain_text("Error")
    expect(result).to_contain_text("crashy")


def test_playground_answers_an_elicitation_in_a_form(gw: Gateway, page: object) -> None:
    _playground(page, gw)
    _select_tool(page, "everything_trigger-elicitation-request")
    page.get_by_role("button", name=re.compile("^Call")).click()  # type: ignore[attr-defined]
    dialog = page.get_by_role("dialog", name="Elicitation request")  # type: ignore[attr-defined]
    expect(dialog).to_be_visible(timeout=WAIT)
    expect(dialog).to_contain_text("Please provide inputs")
    dialog.get_by_label("name", exact=True).fill("Ada Lovelace")  # type: ignore[attr-defined]
    dialog.get_by_label("check", exact=True).check()  # type: ignore[attr-defined]
    dialog.get_by_label("integer", exact=True).fill("7")  # type: ignore[attr-defined]
    page.screenshot(path=str(IMG / "admin-elicitation.png"))  # type: ignore[attr-defined]
    dialog.get_by_role("button", name="Accept").click()  # type: ignore[attr-defined]
    result = page.locator(".result:not(.running)")  # type: ignore[attr-defined]
    expect(result).to_be_visible(timeout=WAIT)
    expect(result).to_contain_text("User provided the requested information")
    expect(result).to_contain_text("Name: Ada Lovelace")
    expect(result).to_contain_text("Favorite Integer: 7")
    expect(page.locator(".event-list")).to_contain_text("elicitation: accept")  # type: ignore[attr-defined]


def test_admin_token_is_asked_once_and_kept_for_the_tab(tmp_path: Path, browser: object) -> None:
    config = {"admin": {"token": "s3cret-admin-token"}, "targets": [CLOCK]}
    with run_gateway(config, tmp_path, wait=False) as gw:
        assert httpx.get(gw.admin_url + "/api/overview").status_code == 401
        assert httpx.get(gw.admin_url + "/metrics").status_code == 401
        context = browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
        page = context.new_page()
        page.goto(gw.admin_url + "/")
        page.get_by_label("Token").fill("wrong")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("That token was refused")).to_be_visible(timeout=WAIT)
        page.get_by_label("Token").fill("s3cret-admin-token")
        page.get_by_role("button", name="Sign in").click()
        expect(_row(page, "clock").locator(".badge")).to_have_text("ready", timeout=WAIT)  # type: ignore[attr-defined]
        assert page.evaluate("sessionStorage.getItem('mcpmux.adminToken')") == "s3cret-admin-token"
        # A reload keeps the token (same tab); the playground reaches /mcp with it.
        page.reload()
        expect(_row(page, "clock").locator(".badge")).to_have_text("ready", timeout=WAIT)  # type: ignore[attr-defined]
        page.get_by_role("link", name="Playground").click()
        expect(page.locator("#conn-status")).to_have_text("connected", timeout=WAIT)
        _select_tool(page, "now")
        expect(_call(page)).to_have_attribute("data-outcome", "ok")
        context.close()


def test_overview_shows_a2a_agents_and_an_agent_going_down(tmp_path: Path, browser: object) -> None:
    """The A2A agents have their own table: card name and version, state, last error,
    updated live when an agent stops answering."""
    from tests.peers.a2a_agent import start_agent

    with start_agent("alpha", tmp_path / "alpha.log") as alpha, contextlib.ExitStack() as stack:
        beta = stack.enter_context(start_agent("beta", tmp_path / "beta.log"))
        config = {"targets": [CLOCK],
                  "a2a": {"agents": [{"name": a.name, "url": a.url, "timeout": 2} for a in (alpha, beta)]}}
        with run_gateway(config, tmp_path) as gw:
            context = browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
            page = context.new_page()
            page.goto(gw.admin_url + "/")
            for name in ("alpha", "beta"):
                row = page.locator(f'tr[data-agent="{name}"]')
                expect(row.locator(".badge")).to_have_text("ready", timeout=WAIT)  # type: ignore[attr-defined]
                expect(row).to_contain_text(f"{name} agent")
                expect(row).to_contain_text("1.2.3")
            stack.close()  # beta stops; a call to it finds out
            httpx.post(f"{gw.a2a_url}/beta/jsonrpc", json={}, timeout=10)
            row = page.locator('tr[data-agent="beta"]')
            expect(row.locator(".badge")).to_have_text("unreachable", timeout=WAIT)  # type: ignore[attr-defined]
            expect(row.locator(".last-error")).not_to_have_text("—")  # type: ignore[attr-defined]
            expect(page.locator('tr[data-agent="alpha"] .badge')).to_have_text("ready")  # type: ignore[attr-defined]
            context.close()
