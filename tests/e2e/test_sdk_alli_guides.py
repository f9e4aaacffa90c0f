"""Pages written for Alli's own integration guides (v1 and v2), unchanged, on a business's page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.e2e.sdk_pages import banner_text, messages_in, page_with_sdk, widget
from tests.helpers.processes import ServeProcess
from tests.helpers.site import PageErrors, Site, open_page, run_server, wait_for

WELCOME = "Hi! I'm the Demo Shop assistant. What can I do for you?"

# Alli's v1 integration snippet, as its guide prints it (the key is the only thing a business changes).
V1_SNIPPET = """
Alli.initialize({
  apiKey: "YOUR_API_KEY",
  debug: false,
  backButton: true,
  providerLink: true,
  styleOptions: { conversationContainer: { right: 50, left: 50, bottom: 50 } }
});
if (window.Alli) { window.Alli.event(); }
"""


def v1_page(
    site: Site, server: ServeProcess, path: str, snippet: str = V1_SNIPPET, host: str | None = None
) -> str:
    """A page that loads our script and runs the v1 snippet with our key; ``host`` serves it on another name."""
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Shop</title></head>
<body><h1>Acme shop</h1><p>A page written for Alli's guide.</p>
<script src="{server.sdk_url}"></script>
<script>{snippet.replace("YOUR_API_KEY", server.sdk_key)}</script>
</body></html>"""
    url = site.add(path, html)
    return url.replace("127.0.0.1", host) if host else url


def test_the_v1_snippet_works_verbatim(
    page: Page, page_errors: PageErrors, site: Site, server: ServeProcess
) -> None:
    page.goto(v1_page(site, server, "/alli-v1.html"))
    chat = widget(page)

    expect(chat.locator(".msg").first).to_have_text(WELCOME)  # event() with no name: the bot's welcome
    launcher = chat.locator(".launcher").bounding_box()
    window = chat.locator(".window").bounding_box()
    assert launcher is not None and window is not None
    # styleOptions.conversationContainer: 50 px from the right (the placement's side) and from the bottom.
    assert launcher["x"] + launcher["width"] == 1280 - 50
    assert launcher["y"] + launcher["height"] == 800 - 50
    assert window["x"] + window["width"] == 1280 - 50
    assert window["y"] + window["height"] <= launcher["y"]
    expect(chat.locator(".provider a")).to_have_text("Powered by rejoinder")
    expect(chat.locator(".back")).to_be_hidden()  # a back button only in the full window

    chat.get_by_role("button", name="Opening hours").click()
    expect(chat.locator(".msg").last).to_have_text("We're open every day from 9:00 to 18:00.")
    assert page.evaluate("Alli.status") == "online"
    assert page_errors.exceptions == [] and page_errors.console == []


def test_the_back_button_closes_the_full_window_and_the_provider_link_can_be_turned_off(
    page: Page, site: Site, server: ServeProcess
) -> None:
    options = ', backButton: true, providerLink: false, popupMode: true, persist: "none"'
    page.set_viewport_size({"width": 500, "height": 800})  # a small screen: the full window
    page.goto(page_with_sdk(site, server, "/back.html", "Alli.open();", options=options))
    chat = widget(page)

    expect(chat.locator(".window")).to_be_visible()
    expect(chat.locator(".provider")).to_have_count(0)
    chat.get_by_role("button", name="Back").click()
    expect(chat.locator(".window")).to_be_hidden()
    expect(chat.locator(".launcher")).to_be_visible()


def test_unknown_options_are_ignored_with_a_debug_warning(
    page: Page, page_errors: PageErrors, site: Site, server: ServeProcess
) -> None:
    warnings: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "warning":
            warnings.append(message.text)

    page.on("console", on_console)
    snippet = V1_SNIPPET.replace("debug: false", "debug: true, headerTheme: 'dark'").replace(
        "bottom: 50", "bottom: 50, top: 3"
    )
    page.goto(v1_page(site, server, "/alli-v1-debug.html", snippet))

    expect(widget(page).locator(".msg").first).to_have_text(WELCOME)
    assert any("headerTheme is not supported; ignored" in text for text in warnings), warnings
    assert any("conversationContainer.top is not supported" in text for text in warnings), warnings
    assert page_errors.exceptions == [] and page_errors.console == []


# ------------------------------------------------------------------------------------------------ a branded bot


@pytest.fixture(scope="module")
def branded(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """A bot with its own look and a welcome event that no skill answers."""
    site.add("/ada.svg", ADA_SVG)
    settings = {
        "welcome_event": "hello_there",
        "widget": {
            "title": "Acme help",
            "accent": "#0f766e",
            "greeting_name": "Ada",
            "avatar": f"{site.origin}/ada.svg",
        },
    }
    with run_server(tmp_path_factory.mktemp("branded"), [site.origin], settings) as running:
        yield running


ADA_SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><circle cx="16" cy="16" r="16"
fill="#f59e0b"/><text x="16" y="21" font-size="14" text-anchor="middle" fill="#fff" font-family="sans-serif">A</text>
</svg>"""


def test_event_without_a_welcome_skill_opens_a_chat_that_waits_for_the_first_message(
    page: Page, page_errors: PageErrors, site: Site, branded: ServeProcess
) -> None:
    script = "window.answer = Alli.event();"
    page.goto(page_with_sdk(site, branded, "/no-welcome.html", script, options=', persist: "none"'))
    chat = widget(page)

    expect(chat.locator(".window")).to_be_visible()
    assert page.evaluate("window.answer") is None
    assert messages_in(page) == [] and banner_text(page) == ""
    assert page.evaluate("Alli.status") == "idle"
    expect(chat.locator(".input")).to_be_enabled()

    chat.locator(".input").fill("hello")
    chat.locator(".input").press("Enter")
    # The first message starts the conversation with the default skill.
    expect(chat.locator(".msg").last).to_have_text(WELCOME)
    assert messages_in(page) == [("customer", "hello"), ("bot", WELCOME)]
    assert page_errors.exceptions == [] and page_errors.console == []


def test_the_bots_widget_settings_dress_the_widget(page: Page, site: Site, branded: ServeProcess) -> None:
    page.goto(
        page_with_sdk(site, branded, "/branded.html", "Alli.event('echo');", options=', persist: "none"')
    )
    chat = widget(page)

    expect(chat.locator(".msg").last).to_have_text("Say something.")
    expect(chat.locator(".title")).to_have_text("Acme help")
    header_colour = chat.locator(".header").evaluate("node => getComputedStyle(node).backgroundColor")
    assert header_colour == "rgb(15, 118, 110)"
    expect(chat.locator(".who").first).to_contain_text("Ada")
    expect(chat.locator(".who img.avatar").first).to_have_attribute("src", f"{site.origin}/ada.svg")
    wait_for(lambda: chat.locator(".who img.avatar").first.evaluate("img => img.naturalWidth > 0"))
    stamp = chat.locator(".stamp").first
    expect(stamp).to_have_text("just now")
    full_time = page.evaluate("new Date().getFullYear()")
    assert str(full_time) in (stamp.get_attribute("title") or "")  # the full date and time on hover

    chat.locator(".input").fill("one")
    chat.locator(".input").press("Enter")
    expect(chat.locator(".msg").last).to_have_text("You said: one")
    assert chat.locator(".stamp").count() == 1  # one group: the messages are minutes apart at most
    assert chat.locator(".who").count() == 2  # the bot's name where the bot starts speaking


def test_quick_replies_sit_under_the_question_they_answer(
    page: Page, site: Site, server: ServeProcess
) -> None:
    page.goto(
        page_with_sdk(site, server, "/choices.html", "Alli.event('welcome');", options=', persist: "none"')
    )
    chat = widget(page)

    expect(chat.get_by_role("button", name="My orders")).to_be_visible()
    order = chat.locator(".log").evaluate(
        "log => [...log.children].filter(n => !n.hidden).map(n => n.className.split(' ')[0])"
    )
    assert order[-2:] == ["msg", "choices"], order


# ------------------------------------------------------------------------------------------------ Alli v2


V2_MODULE = """
import Alli from 'SERVER/sdk/alli.esm.min.js';
Alli.setPlacement('bottom-left');
Alli.setUser({ id: 'u-7', name: 'Ada', variables: { user_name: 'Ada' } });
await Alli.initialize({ sdkKey: 'SDK_KEY' });
window.same = Alli === window.Alli;
window.userBefore = Alli.user;
Alli.setUserId('u-8');
window.userAfter = Alli.user;
try { Alli.user.id = 'changed'; } catch (error) { window.frozen = error instanceof TypeError; }
await Alli.event('whoami');
window.done = true;
"""


def test_the_v2_calls_and_the_es_module(
    page: Page, page_errors: PageErrors, site: Site, server: ServeProcess
) -> None:
    module = V2_MODULE.replace("SERVER", server.base).replace("SDK_KEY", server.sdk_key)
    html = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>Shop</title></head><body><h1>Acme shop</h1><script type="module">{module}</script></body></html>"""
    page.goto(site.add("/alli-v2.html", html))
    chat = widget(page)

    wait_for(lambda: page.evaluate("window.done === true"))
    assert page.evaluate("window.same") is True
    assert page.evaluate("window.userBefore") == {
        "id": "u-7",
        "name": "Ada",
        "variables": {"user_name": "Ada"},
    }
    assert page.evaluate("window.userAfter")["id"] == "u-8"
    assert page.evaluate("window.frozen") is True
    expect(chat.locator(".msg").last).to_have_text("Hello Ada, you are not verified.")
    launcher = chat.locator(".launcher").bounding_box()
    assert launcher is not None and launcher["x"] == 20  # setPlacement('bottom-left') before initialize

    page.evaluate("Alli.setPlacement('bottom-right')")  # and after
    moved = chat.locator(".launcher").bounding_box()
    assert moved is not None and moved["x"] + moved["width"] == 1280 - 20
    assert page_errors.exceptions == [] and page_errors.console == []


def test_set_user_variables_reach_the_skill(page: Page, site: Site, server: ServeProcess) -> None:
    script = "Alli.setUser({ variables: { user_name: 'Ada' } }); Alli.event('orders');"
    page.goto(page_with_sdk(site, server, "/v2-vars.html", script, options=', persist: "none"'))

    expect(widget(page).locator(".msg").first).to_have_text(
        "Hi Ada! To see your orders you need to log in first."
    )


# ------------------------------------------------------------------------------------------------ a wrong origin


def test_a_page_on_an_origin_the_bot_does_not_allow_is_told_which_origin_to_add(
    page: Page, site: Site, server: ServeProcess
) -> None:
    warnings: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "warning":
            warnings.append(message.text)

    page.on("console", on_console)
    # The same page, served as http://localhost:<port>; the bot allows http://127.0.0.1:<port> only.
    url = v1_page(
        site, server, "/wrong-origin.html", V1_SNIPPET.replace("debug: false", "debug: true"), "localhost"
    )
    origin = url.rsplit("/", 1)[0]
    page.goto(url)
    chat = widget(page)

    expect(chat.locator(".window")).to_be_visible()  # event() opened it
    wait_for(lambda: page.evaluate("Alli.status") == "blocked")
    assert banner_text(page) == f"This chat is not enabled for this website ({origin}) yet."
    expect(chat.locator(".input")).to_be_disabled()
    expect(chat.locator(".banner-action")).to_be_hidden()
    assert "cannot be reached" not in banner_text(page)
    assert any(f'add "{origin}" to allowed_origins' in text for text in warnings), warnings


# ------------------------------------------------------------------------------------------------ the widget's language


@pytest.mark.parametrize(
    ("locale", "placeholder", "send", "restart"),
    [
        ("ko", "메시지를 입력하세요…", "보내기", "새 대화 시작"),
        ("ja", "メッセージを入力…", "送信", "新しい会話を始める"),
    ],
    ids=["ko", "ja"],
)
def test_the_widget_speaks_the_pages_locale(
    page: Page, site: Site, server: ServeProcess, locale: str, placeholder: str, send: str, restart: str
) -> None:
    options = f', locale: "{locale}", persist: "none"'
    script = "Alli.event('welcome');"
    page.goto(page_with_sdk(site, server, f"/locale-{locale}.html", script, options=options))
    chat = widget(page)

    expect(chat.locator(".msg").first).to_have_text(WELCOME)  # the bot's own words are the bot's
    expect(chat.locator(".input")).to_have_attribute("placeholder", placeholder)
    expect(chat.locator(".send")).to_have_attribute("aria-label", send)
    assert chat.locator(".root").get_attribute("lang") == locale

    # A refusal speaks the page's language too, with no English server text.
    script = "Alli.__startConversation('rjt_not-a-real-token').catch(() => {});"
    page.goto(page_with_sdk(site, server, f"/refused-{locale}.html", script, options=options))
    wait_for(lambda: page.evaluate("Alli.status") == "expired")
    expect(chat.locator(".banner-action")).to_have_text(restart)
    assert not any(c.isascii() and c.isalpha() for c in banner_text(page)), banner_text(page)


def test_a_page_adds_a_language(page: Page, site: Site, server: ServeProcess) -> None:
    url = page_with_sdk(site, server, "/locale-fr.html", options=', locale: "fr-FR"')
    html = site.pages["/locale-fr.html"].replace(
        "Alli.initialize(",
        "Alli.addLocale('fr', { placeholder: 'Écrivez un message…' });\n  Alli.initialize(",
    )
    site.add("/locale-fr.html", html)
    page.goto(url)

    expect(widget(page).locator(".input")).to_have_attribute("placeholder", "Écrivez un message…")
    expect(widget(page).locator(".send")).to_have_attribute(
        "aria-label", "Send"
    )  # what it leaves out is English


# ------------------------------------------------------------------------------------------------ a phone


def test_on_a_phone_the_launcher_keeps_out_of_the_way(phone: Page, site: Site, server: ServeProcess) -> None:
    page = phone
    body = "<p style='position:fixed;bottom:0;left:0;right:0;margin:0;padding:16px;background:#eee'>Basket: 2 items</p>"
    viewport = '<meta name="viewport" content="width=device-width, initial-scale=1">'
    page.goto(
        page_with_sdk(site, server, "/phone.html", "", options=', persist: "none"', body=body, head=viewport)
    )
    chat = widget(page)

    launcher = chat.locator(".launcher").bounding_box()
    assert launcher is not None
    assert launcher["width"] == 48 and launcher["x"] + launcher["width"] == 390 - 12

    chat.locator(".launcher").click()
    window = chat.locator(".window").bounding_box()
    assert window == {"x": 0, "y": 0, "width": 390, "height": 844}
    expect(chat.locator(".launcher")).to_be_hidden()  # it would cover the send button
    send = chat.locator(".send").bounding_box()
    assert send is not None and send["y"] + send["height"] <= 844 - 20  # above the "powered by" line
    on_top = page.evaluate(
        """([x, y]) => {
          const root = document.querySelector('#rejoinder-widget').shadowRoot;
          const hit = root.elementFromPoint(x, y);
          return hit && hit.closest('button') ? hit.closest('button').className : null;
        }""",
        [send["x"] + send["width"] / 2, send["y"] + send["height"] / 2],
    )
    assert on_top == "send"
    chat.locator(".input").fill("hello")
    chat.locator(".send").click()
    expect(chat.locator(".msg").last).to_have_text(WELCOME)


@pytest.fixture
def phone(browser: Browser, request: pytest.FixtureRequest, page_errors: PageErrors) -> Iterator[Page]:
    """A page on a 390 px wide phone; a screenshot of it is saved when the test ends."""
    options = {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    }
    with open_page(browser, request.node.name, page_errors, **options) as opened:
        yield opened
