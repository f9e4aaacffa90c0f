"""Screenshots of the web widget for the docs: docs/images/widget-*.png.

Starts its own server (see sdk_paint.py) with a small tour skill, opens a plain shop page in headless chromium and
saves the popup on a desktop page, a resumed conversation in full window on a phone, the state shown for a
revoked token, Alli's v1 snippet verbatim, the widget in Korean, and a page on an origin the bot does not allow.

    python bench/sdk_screenshots.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, sync_playwright

from sdk_paint import CHROMIUM, issue_token, page_server, rejoinder_server

ROOT = Path(__file__).resolve().parents[1]

TOUR_SKILL = """
id: tour
name: Help tour
triggers: {events: [tour]}
start: hello
nodes:
  hello:
    type: message
    text: "Hi! I'm the Demo Shop assistant. I can track orders, explain returns and more."
    next: ask
  ask:
    type: question
    text: "What can I help you with today?"
    choices:
      - {label: "Track my order", value: track, next: track}
      - {label: "Returns", value: returns, next: returns}
      - {label: "Opening hours", value: hours, next: hours}
    save_to: topic
    next: ask
  track:
    type: message
    text: "Order A-1001 left our warehouse yesterday and should arrive on Thursday."
    buttons:
      - {label: "Track the parcel", url: "https://example.com/track/A-1001"}
    next: more
  returns:
    type: message
    text: "You can return anything within 30 days. Details: https://example.com/returns"
    next: more
  hours:
    type: message
    text: "We're open every day from 9:00 to 18:00."
    next: more
  more:
    type: question
    text: "Anything else?"
    choices:
      - {label: "Returns", value: returns, next: returns}
      - {label: "No, thanks", value: done, next: bye}
    save_to: topic
    next: bye
  bye:
    type: end
    text: "Have a nice day!"
"""

KO_SKILL = """
id: tour_ko
name: Help tour in Korean
triggers: {events: [tour_ko]}
start: hello
nodes:
  hello:
    type: message
    text: "안녕하세요! 데모 숍 도우미입니다. 주문 조회와 반품 안내를 도와드려요."
    next: ask
  ask:
    type: question
    text: "무엇을 도와드릴까요?"
    choices:
      - {label: "주문 조회", value: track, next: track}
      - {label: "반품", value: returns, next: track}
    save_to: topic
    next: track
  track:
    type: message
    text: "주문 A-1001은 어제 출고되어 목요일에 도착할 예정입니다."
    next: ask
"""

V1_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<style>
  body {{ margin: 0; font: 16px/1.5 Georgia, serif; background: #faf7f2; color: #2b2b2b; }}
  header {{ padding: 22px 48px; border-bottom: 1px solid #e8e1d6; font: 700 22px system-ui, sans-serif; }}
  main {{ padding: 48px; max-width: 640px; }}
</style></head>
<body><header>Acme Home</header><main><h1>Help centre</h1><p>A page written for Alli's v1 guide.</p></main>
<script src="{base}/sdk/alli.js"></script>
<script>
Alli.initialize({{
  apiKey: "{key}",
  debug: false,
  backButton: true,
  providerLink: true,
  styleOptions: {{ conversationContainer: {{ right: 50, left: 50, bottom: 50 }} }}
}});
if (window.Alli) {{ window.Alli.event(); }}
</script>
</body></html>"""

SHOP_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body {{ margin: 0; font: 16px/1.5 Georgia, serif; background: #faf7f2; color: #2b2b2b; }}
  header {{ padding: 22px 48px; border-bottom: 1px solid #e8e1d6; font: 700 22px system-ui, sans-serif; }}
  main {{ padding: 48px; max-width: 640px; }}
  h1 {{ font-size: 40px; margin: 0 0 12px; }}
  .tiles {{ display: flex; gap: 16px; margin-top: 32px; }}
  .tiles div {{ width: 150px; height: 150px; border-radius: 12px; background: #eadfcf; }}
</style></head>
<body><header>Acme Home</header>
<main><h1>Small things for slow mornings</h1><p>Mugs, towels and boards, made in small batches.</p>
<div class="tiles"><div></div><div></div><div></div></div></main>
<script src="{base}/sdk/alli.js"></script>
<script>Alli.initialize({{sdkKey: "{key}", server: "{base}", persist: "none"{options}}});</script>
</body></html>"""


def click_choice(page: Page, label: str, then_count: int) -> None:
    widget = page.locator("#rejoinder-widget")
    widget.locator(".choice", has_text=label).click()
    widget.locator(".msg").nth(then_count - 1).wait_for()


def popup(browser: Browser, url: str, out: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(url)
    page.evaluate("Alli.event('tour')")
    page.locator("#rejoinder-widget .choice").first.wait_for()
    click_choice(page, "Track my order", 5)
    page.locator("#rejoinder-widget .input").fill("Can I change the address?")
    page.locator("#rejoinder-widget .input").blur()
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "widget-popup.png"), clip={"x": 560, "y": 40, "width": 720, "height": 760})
    context.close()


def full_window(browser: Browser, url: str, base: str, keys: dict[str, str], out: Path) -> None:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {keys['sdk_key']}"}) as client:
        started = client.post("/v1/conversations", json={"event": "tour"}).json()
        client.post(
            f"/v1/conversations/{started['conversation_id']}/messages",
            json={"choice": "returns", "client_message_id": "c1"},
            headers={"Authorization": f"Bearer {started['session']}"},
        ).raise_for_status()
    token = issue_token(base, keys, started["conversation_id"])
    context = browser.new_context(viewport={"width": 390, "height": 760}, device_scale_factor=2)
    page = context.new_page()
    page.goto(url)
    page.evaluate(
        "token => Alli.__startConversation(token, {launcher: false, popupMode: true})"
        ".then(() => Alli.__sendChat('No, thanks'))",
        token,
    )
    page.locator("#rejoinder-widget .msg").nth(6).wait_for()
    page.locator("#rejoinder-widget .input").blur()
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "widget-mobile.png"))
    context.close()


def refused(browser: Browser, url: str, base: str, keys: dict[str, str], out: Path) -> None:
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {keys['sdk_key']}"}) as client:
        started = client.post("/v1/conversations", json={"event": "tour"}).json()
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {keys['secret_key']}"}) as admin:
        issued = admin.post(f"/v1/conversations/{started['conversation_id']}/tokens", json={}).json()
        admin.delete(f"/v1/tokens/{issued['id']}").raise_for_status()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(url)
    page.evaluate(
        "token => Alli.__startConversation(token, {launcher: true}).catch(() => undefined)", issued["token"]
    )
    page.locator("#rejoinder-widget .banner-action").wait_for()
    page.locator("#rejoinder-widget .banner-action").blur()
    page.wait_for_timeout(200)
    page.screenshot(
        path=str(out / "widget-expired.png"), clip={"x": 840, "y": 70, "width": 440, "height": 730}
    )
    context.close()


def alli_v1(browser: Browser, url: str, out: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(url)
    page.locator("#rejoinder-widget .choice").first.wait_for()
    click_choice(page, "Opening hours", 3)
    page.locator("#rejoinder-widget .input").blur()
    page.wait_for_timeout(300)
    page.screenshot(
        path=str(out / "widget-alli-v1.png"), clip={"x": 560, "y": 0, "width": 720, "height": 800}
    )
    context.close()


def korean(browser: Browser, url: str, out: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="ko-KR")
    page = context.new_page()
    page.goto(url)
    page.evaluate("Alli.event('tour_ko')")
    page.locator("#rejoinder-widget .choice").first.wait_for()
    click_choice(page, "주문 조회", 4)
    page.locator("#rejoinder-widget .input").blur()
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "widget-ko.png"), clip={"x": 840, "y": 70, "width": 440, "height": 730})
    context.close()


def wrong_origin(browser: Browser, url: str, out: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(url)
    page.evaluate("Alli.open()")
    page.wait_for_function("Alli.status === 'blocked'")
    page.wait_for_timeout(200)
    page.screenshot(
        path=str(out / "widget-wrong-origin.png"), clip={"x": 840, "y": 70, "width": 440, "height": 730}
    )
    context.close()


SHOTS = (
    "widget-popup.png",
    "widget-mobile.png",
    "widget-expired.png",
    "widget-alli-v1.png",
    "widget-ko.png",
    "widget-wrong-origin.png",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    pages: dict[str, str] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        page_server(pages) as origin,
        rejoinder_server(Path(tmp), origin, {"tour": TOUR_SKILL, "tour_ko": KO_SKILL}) as (base, keys),
        sync_playwright() as playwright,
    ):
        pages["/"] = SHOP_PAGE.format(base=base, key=keys["sdk_key"], options="")
        pages["/ko"] = SHOP_PAGE.format(base=base, key=keys["sdk_key"], options=', locale: "ko"')
        pages["/v1"] = V1_PAGE.format(base=base, key=keys["sdk_key"])
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            popup(browser, origin + "/", args.out)
            full_window(browser, origin + "/", base, keys, args.out)
            refused(browser, origin + "/", base, keys, args.out)
            alli_v1(browser, origin + "/v1", args.out)
            korean(browser, origin + "/ko", args.out)
            # The same page on another name of this machine: an origin the bot does not allow.
            wrong_origin(browser, origin.replace("127.0.0.1", "localhost") + "/", args.out)
        finally:
            browser.close()
    for name in SHOTS:
        print(f"{args.out / name}: {(args.out / name).stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
