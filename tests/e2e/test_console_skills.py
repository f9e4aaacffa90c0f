"""The console's Skills pages in chromium, on a `rejoinder serve` process of its own: an editor uploads a broken
skill and sees the error at its line, then the fixed one; the graph is drawn and its nodes lead to their lines.

Screenshots for the docs go to docs/images/console-skills*.png.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.helpers.bots import ROOT
from tests.helpers.console import sign_in_page
from tests.helpers.processes import ServeProcess
from tests.helpers.site import PageErrors, Site, run_console_server

IMAGES = ROOT / "docs" / "images"
WELCOME = (ROOT / "examples" / "shop" / "skills" / "welcome.yaml").read_text()
BROKEN = WELCOME.replace("    next: menu\n", "    next: menuu\n", 1)
BROKEN_LINE = BROKEN.splitlines().index("    next: menuu") + 1
FIXED = WELCOME.replace("We're open every day from 9:00 to 18:00.", "We're open from 8:00 to 20:00.")


@pytest.fixture
def console_server(site: Site, tmp_path: Path) -> Iterator[ServeProcess]:
    """A server of its own (its uploads change its bot), with an editor account."""
    with run_console_server(tmp_path, [site.origin], {"editor@example.com": "editor"}) as running:
        yield running


def test_an_editor_fixes_a_broken_upload_and_follows_the_graph_to_the_source(
    page: Page, page_errors: PageErrors, console_server: ServeProcess
) -> None:
    base = console_server.base
    sign_in_page(page, base, "editor@example.com")
    page.goto(f"{base}/dashboard/skills")
    page.get_by_role("link", name="welcome").click()
    expect(page.get_by_role("heading", name="Skill welcome")).to_be_visible()

    # The graph is drawn, and a node leads to its line of the source.
    graph = page.locator(".graph-box svg")
    expect(graph).to_be_visible()
    assert graph.bounding_box()["height"] > 200  # type: ignore[index]
    menu = page.get_by_role("link", name="question node menu: show its source")
    menu.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/dashboard/skills/welcome/source\?bot=shop#L\d+$"))
    line = page.url.rsplit("#L", 1)[1]
    target = page.locator(f"tr#L{line}")
    expect(target).to_be_in_viewport()
    expect(target.locator(".code-line")).to_have_text("  menu:")
    assert target.evaluate("row => getComputedStyle(row).backgroundColor") == "rgb(255, 243, 196)"

    # A broken file: refused, the problem shown at its line, the text back in the form to be fixed.
    page.go_back()
    page.get_by_label("Skill file").set_input_files(
        {"name": "welcome.yaml", "mimeType": "application/yaml", "buffer": BROKEN.encode()}
    )
    page.get_by_role("button", name="Check and upload").click()
    expect(page.get_by_role("heading", name="The skill was not saved")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text("Nothing was saved: the skill has 1 error.")
    marked = page.locator("tr.has-problem")
    expect(marked).to_have_count(1)
    expect(marked).to_have_attribute("id", f"L{BROKEN_LINE}")
    expect(marked.locator(".code-line")).to_have_text("    next: menuu")
    problem = page.locator(".problem-row .problem")
    expect(problem).to_contain_text(f"Line {BROKEN_LINE}, error:")
    expect(problem).to_contain_text("no node 'menuu'")
    page.screenshot(path=str(IMAGES / "console-skills-error.png"), full_page=True)

    # The fixed text, pasted into the form: saved as version 1, shown in the history.
    page.get_by_label("Or paste the skill's YAML").fill(FIXED)
    page.get_by_role("button", name="Check and upload").click()
    page.wait_for_url(re.compile(r"/dashboard/skills/welcome\?bot=shop&notice=uploaded$"))
    expect(page.get_by_role("status")).to_contain_text("The new version is saved")
    history = page.locator("section", has=page.get_by_role("heading", name="Versions"))
    expect(history.locator("tbody tr")).to_have_count(1)
    expect(history.locator("tbody tr")).to_contain_text("editor@example.com")
    page.screenshot(path=str(IMAGES / "console-skills.png"), full_page=True)
    # Nothing the CSP refused (the refused upload's 422 and the favicon's 404 are logged too, and expected).
    assert page_errors.exceptions == []
    assert [message for message in page_errors.console if "Failed to load resource" not in message] == []


def test_the_skill_page_fits_a_phone_and_its_graph_scrolls_in_its_box(
    browser: Browser, console_server: ServeProcess
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        sign_in_page(page, console_server.base, "editor@example.com")
        page.goto(f"{console_server.base}/dashboard/skills/orders?bot=shop")
        box = page.locator(".graph-box")
        expect(box.locator("svg")).to_be_visible()
        widths = page.evaluate(
            "() => [document.documentElement.scrollWidth, innerWidth,"
            " document.querySelector('.graph-box').scrollWidth, document.querySelector('.graph-box').clientWidth]"
        )
        page_width, viewport, graph_width, box_width = widths
        assert page_width <= viewport  # the page itself does not scroll sideways
        assert graph_width > box_width  # the graph does, inside its box
        # The skill's name at the top, its graph below.
        page.locator("h1").evaluate("heading => heading.scrollIntoView()")
        page.screenshot(path=str(IMAGES / "console-skills-mobile.png"))
        assert [message for message in errors if "Failed to load resource" not in message] == []
    finally:
        context.close()
