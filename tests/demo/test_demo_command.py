"""``rejoinder demo`` as a person runs it: what it prints, the whole story over HTTP, and a clean stop."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.demo import DemoProcess, start_demo
from tests.helpers.processes import COMMAND_TIMEOUT, REJOINDER


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    running = start_demo(tmp_path_factory.mktemp("demo"), log_level="debug")
    yield running
    running.stop()


def test_it_prints_the_shop_url_the_keys_and_what_to_try(demo: DemoProcess) -> None:
    lines = demo.printed.splitlines()

    assert lines[0] == f"rejoinder demo: the shop is at {demo.base}/demo/"
    assert demo.sdk_key.startswith("pk_") and demo.secret_key.startswith("sk_")
    guide = lines[lines.index("What to try:") + 1 :]
    assert [line.split(".")[0].strip() for line in guide[:3]] == ["1", "2", "3"]
    assert lines[-1] == "Press Ctrl-C to stop."
    assert httpx.get(f"{demo.base}/demo/", timeout=10).status_code == 200


def test_the_login_and_resume_story_over_http(demo: DemoProcess) -> None:
    browser = httpx.Client(base_url=demo.base, timeout=10)
    sdk = {"Authorization": f"Bearer {demo.sdk_key}", "Origin": demo.base}
    shop_page = browser.get("/demo/")
    assert demo.sdk_key in shop_page.text

    # The shop page: the customer asks about their orders; the page tells the shop which chat is theirs.
    started = browser.post("/v1/conversations", json={"event": "orders"}, headers=sdk)
    assert started.status_code == 201, started.text
    conversation = started.json()
    assert [m["text"] for m in conversation["messages"]] == [
        "Hi there! To see your orders you need to log in first.",
        f"Please log in here: {demo.base}/demo/login. I'll be waiting.",
    ]
    claimed = browser.post(
        "/demo/shop-api/visitor/conversation", json={"conversation_id": conversation["conversation_id"]}
    )
    assert claimed.status_code == 204

    # The login page, then the account page with the snippet and the token the bot sent to the shop's backend.
    assert "no password" in browser.get("/demo/login").text
    logged_in = browser.post("/demo/login", data={"name": "Ann"}, follow_redirects=True)
    assert str(logged_in.url) == f"{demo.base}/demo/account"
    found = re.search(r'__startConversation\(("rjt_[^"]+")', logged_in.text)
    assert found is not None, logged_in.text
    token = json.loads(found.group(1))

    # What the snippet does: resume by the token, then send RESUME as the customer.
    resumed = browser.post("/v1/conversations/resume", json={"token": token}, headers=sdk)
    assert resumed.status_code == 200, resumed.text
    session = resumed.json()
    assert session["conversation_id"] == conversation["conversation_id"]
    assert [m["text"] for m in session["messages"]][:2] == [m["text"] for m in conversation["messages"]]
    reply = browser.post(
        f"/v1/conversations/{session['conversation_id']}/messages",
        json={"text": "RESUME", "client_message_id": "resume-1"},
        headers={"Authorization": f"Bearer {session['session']}", "Origin": demo.base},
    )
    assert reply.status_code == 200, reply.text
    assert [(m["sender"], m["text"]) for m in reply.json()["messages"]] == [
        ("customer", "RESUME"),
        ("bot", "Welcome back, Ann! You're logged in."),
        ("bot", "Your orders: A-1001 (shipped), A-1002 (being packed)."),
    ]

    # The token went from the bot to the shop's backend and into the page: never into a URL or a log line.
    urls = [str(r.url) for r in (shop_page, started, claimed, logged_in, *logged_in.history, resumed, reply)]
    assert not [url for url in urls if token in url]
    assert not [m for m in session["messages"] if token in m["text"]]
    log = demo.log.read_text()
    assert '"route": "/demo/shop-api/chat/resume-token"' in log  # the bot's call reached the shop's backend
    assert token not in log and token not in demo.printed

    # The guide's two commands: the latest conversation, then that conversation's transcript.
    admin = {"Authorization": f"Bearer {demo.secret_key}"}
    latest_url, transcript_url = re.findall(r'curl -s -H "Authorization: Bearer sk_\S+" (\S+)', demo.printed)
    [item] = httpx.get(latest_url, headers=admin, timeout=10).json()["items"]
    assert item["id"] == conversation["conversation_id"]
    url = transcript_url.replace("/ID", f"/{item['id']}")
    transcript = httpx.get(url, headers=admin, timeout=10)
    said = [m["text"] for m in transcript.json()["messages"]]
    assert said[-3:] == [
        "RESUME",
        "Welcome back, Ann! You're logged in.",
        reply.json()["messages"][-1]["text"],
    ]


def test_ctrl_c_stops_it_and_deletes_its_database(tmp_path: Path) -> None:
    running = start_demo(tmp_path)
    files = [line.split("database: ")[1].split(" ")[0] for line in running.output if "database: " in line]
    assert len(files) == 1
    database = Path(files[0])
    assert database.is_file() and database.name == "demo.db"  # the file, not its folder

    code = running.stop()

    assert code == 0, running.log.read_text()
    assert not database.parent.exists()
    assert running.printed.splitlines()[-1] == "rejoinder demo: stopped; the demo database is deleted."


def test_a_busy_port_is_reported_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [REJOINDER, "demo", "--port", str(port)], capture_output=True, text=True, timeout=COMMAND_TIMEOUT
        )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"rejoinder demo: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(try another: --port N, or PORT=N with make run)"
    ]
    assert result.stdout == ""


def test_the_printed_console_sign_in_opens_the_overview(demo: DemoProcess) -> None:
    console = demo.printed_value(r"http://127\.0\.0\.1:\d+/dashboard")
    email = demo.printed_value(r"(?<=email:    )\S+")
    password = demo.printed_value(r"(?<=password: )\S+")
    assert console == f"{demo.base}/dashboard"

    with httpx.Client(base_url=demo.base, timeout=30) as browser:
        form = browser.get("/dashboard/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        signed = browser.post(
            "/dashboard/sign-in",
            data={"email": email, "password": password, "csrf_token": token.group(1), "next": "/dashboard"},
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/dashboard"
        overview = browser.get("/dashboard")
        assert overview.status_code == 200 and "<h1>Overview</h1>" in overview.text
        assert email in overview.text and ">owner<" in overview.text

        wrong = browser.post(
            "/dashboard/sign-in",
            data={
                "email": email,
                "password": password + "x",
                "csrf_token": token.group(1),
                "next": "/dashboard",
            },
        )
        assert wrong.status_code != 303
