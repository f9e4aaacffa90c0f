"""How fast the widget shows a resumed conversation: from ``__startConversation(token)`` to its history painted.

Starts its own ``rejoinder serve`` (the example shop plus an echo skill, on a temporary SQLite database) and a
plain page server on another port of 127.0.0.1, makes a conversation of 201 messages and a token for it, then in
Debian's chromium (headless, through Playwright) times, in a fresh page each run:

* the SDK: ``__startConversation(token, {launcher: false, popupMode: true})`` until its Promise resolves and the
  next frame is painted (two animation frames later) with every message on screen;
* the baseline: the same resume request made by the page with ``fetch`` and its JSON parsed, no rendering.

The ratio SDK / baseline is what the widget adds to the network round trip. Target: SDK median <= 300 ms.

    python bench/sdk_paint.py [--runs 9] [--turns 100]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml
from playwright.sync_api import Browser, sync_playwright

from echo_server import environment, free_port

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "examples" / "shop"
REJOINDER = str(Path(sys.executable).with_name("rejoinder"))
CHROMIUM = "/usr/bin/chromium"
TARGET_MS = 300.0

ECHO_SKILL = """
id: echo
name: Echo
triggers: {events: [echo]}
start: ask
variables: {said: {default: ""}}
nodes:
  ask:
    type: question
    text: "{% if said %}You said: {{ said }}{% else %}Say something.{% endif %}"
    save_to: said
    next: ask
"""

PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head>
<body><h1>Shop</h1><script src="{sdk}"></script>
<script>Alli.initialize({{sdkKey: "{key}", server: "{base}", persist: "none"}});</script></body></html>"""

TIME_SDK = """async (token) => {
  const started = performance.now();
  await Alli.__startConversation(token, {launcher: false, popupMode: true});
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  const elapsed = performance.now() - started;
  const shown = document.querySelector('#rejoinder-widget').shadowRoot.querySelectorAll('.msg').length;
  return [elapsed, shown];
}"""

TIME_FETCH = """async ([base, key, token]) => {
  const started = performance.now();
  const answer = await fetch(base + '/v1/conversations/resume', {
    method: 'POST', headers: {Authorization: 'Bearer ' + key, 'Content-Type': 'application/json'},
    body: JSON.stringify({token}),
  });
  const body = await answer.json();
  return [performance.now() - started, body.messages.length];
}"""


@contextmanager
def page_server(pages: dict[str, str]) -> Iterator[str]:
    """Serve ``pages`` (path → HTML, filled in later) on a free port; yields the origin."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            data = pages.get(self.path, "").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def rejoinder_server(
    workdir: Path, origin: str, skills: dict[str, str] | None = None
) -> Iterator[tuple[str, dict[str, str]]]:
    """The shop bot plus ``skills`` (id → YAML; default: an echo skill), allowing ``origin``.

    Yields the base URL and the keys.
    """
    bot = workdir / "bot"
    shutil.copytree(SHOP, bot, ignore=shutil.ignore_patterns("tests", "__pycache__", "*.py"))
    for skill_id, text in (skills or {"echo": ECHO_SKILL}).items():
        (bot / "skills" / f"{skill_id}.yaml").write_text(text)
    config = yaml.safe_load((bot / "rejoinder.yaml").read_text())
    config["allowed_origins"] = [origin]
    (bot / "rejoinder.yaml").write_text(yaml.safe_dump(config))
    env = environment(workdir, log_level="warning")
    created = subprocess.run(
        [REJOINDER, "keys", "create", str(bot), "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    if created.returncode != 0:
        raise RuntimeError(created.stderr)
    keys = json.loads(created.stdout)
    port = free_port()
    process = subprocess.Popen(
        [REJOINDER, "serve", str(bot), "--port", str(port)], env=env, stdout=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)
        yield base, keys
    finally:
        process.terminate()
        process.wait(timeout=30)


def long_conversation(base: str, keys: dict[str, str], turns: int) -> str:
    """A conversation of 1 + 2·turns messages; returns its id."""
    with httpx.Client(base_url=base, timeout=30) as client:
        started = client.post(
            "/v1/conversations",
            json={"event": "echo"},
            headers={"Authorization": f"Bearer {keys['sdk_key']}"},
        ).json()
        session = {"Authorization": f"Bearer {started['session']}"}
        for n in range(turns):
            text = f"Message number {n}: a line of ordinary length, with a link https://example.com/item/{n}."
            answer = client.post(
                f"/v1/conversations/{started['conversation_id']}/messages",
                json={"text": text, "client_message_id": f"m{n}"},
                headers=session,
            )
            answer.raise_for_status()
    conversation_id: str = started["conversation_id"]
    return conversation_id


def issue_token(base: str, keys: dict[str, str], conversation_id: str) -> str:
    answer = httpx.post(
        f"{base}/v1/conversations/{conversation_id}/tokens",
        json={},
        headers={"Authorization": f"Bearer {keys['secret_key']}"},
        timeout=10,
    )
    answer.raise_for_status()
    token: str = answer.json()["token"]
    return token


def measure(browser: Browser, url: str, script: str, argument: Any) -> tuple[float, int]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("window.Alli !== undefined")
        elapsed, count = page.evaluate(script, argument)
        return float(elapsed), int(count)
    finally:
        context.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument(
        "--turns", type=int, default=100, help="customer messages (each answered: 2 messages)"
    )
    args = parser.parse_args()
    expected = 1 + 2 * args.turns
    pages: dict[str, str] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        page_server(pages) as origin,
        rejoinder_server(Path(tmp), origin) as (base, keys),
    ):
        pages["/"] = PAGE.format(sdk=f"{base}/sdk/alli.js", key=keys["sdk_key"], base=base)
        conversation_id = long_conversation(base, keys, args.turns)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            try:
                sdk, baseline = time_runs(
                    browser, origin + "/", base, keys, conversation_id, args.runs, expected
                )
            finally:
                browser.close()
    sdk_ms, fetch_ms = statistics.median(sdk), statistics.median(baseline)
    print(f"history of {expected} messages, {args.runs} runs each, fresh page per run")
    print(
        f"__startConversation → painted   median {sdk_ms:6.1f} ms   (min {min(sdk):.1f}, max {max(sdk):.1f})"
    )
    print(
        f"baseline: resume fetch + JSON    median {fetch_ms:6.1f} ms   (min {min(baseline):.1f}, max {max(baseline):.1f})"
    )
    verdict = "ok" if sdk_ms <= TARGET_MS else "OVER TARGET"
    print(f"ratio SDK / baseline {sdk_ms / fetch_ms:.2f}; target ≤ {TARGET_MS:.0f} ms: {verdict}")
    return 0 if sdk_ms <= TARGET_MS else 1


def time_runs(
    browser: Browser,
    url: str,
    base: str,
    keys: dict[str, str],
    conversation_id: str,
    runs: int,
    expected: int,
) -> tuple[list[float], list[float]]:
    """Alternate SDK and baseline runs (after one warm-up of each), each in a fresh page."""
    sdk: list[float] = []
    baseline: list[float] = []
    for run in range(runs + 1):
        token = issue_token(base, keys, conversation_id)
        elapsed, shown = measure(browser, url, TIME_SDK, token)
        if shown != expected:
            raise RuntimeError(f"the widget shows {shown} messages, not {expected}")
        fetched, count = measure(browser, url, TIME_FETCH, [base, keys["sdk_key"], token])
        if count != expected:
            raise RuntimeError(f"the resume answer holds {count} messages, not {expected}")
        if run > 0:
            sdk.append(elapsed)
            baseline.append(fetched)
    return sdk, baseline


if __name__ == "__main__":
    sys.exit(main())
