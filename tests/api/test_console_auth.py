"""The console's sign-in, session cookie, CSRF protection, roles and security headers, on the app in process."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from starlette.types import ASGIApp, Receive, Scope, Send

from rejoinder.server.console.pages import MAX_PROBLEM_BYTES, ConsoleHtmlProblems
from rejoinder.server.ops.logs import JsonFormatter
from rejoinder.service import accounts as accounts_module
from rejoinder.skills import Bot
from rejoinder.store import StoreUnavailable
from rejoinder.store.tables import audit_events, console_users
from tests.helpers.app import Server, running
from tests.helpers.console import FAST_HASHER, PASSWORD, create_user, csrf_token_in, sign_in

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'"
)


@pytest.fixture
async def console(tmp_path: Path, shop_bot: Bot) -> AsyncIterator[Server]:
    async with running(tmp_path / "rejoinder.db", {"shop": shop_bot}) as server:
        server.app.state.accounts.hasher = FAST_HASHER
        await create_user(server.store, "owner@example.com", "owner")
        yield server


def another_client(server: Server) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=server.app, raise_app_exceptions=False, client=("127.0.0.1", 50001))
    return httpx.AsyncClient(transport=transport, base_url="http://rejoinder.test")


async def user_emails(server: Server) -> list[str]:
    return await server.store.database.read(
        lambda connection: sorted(connection.execute(sa.select(console_users.c.email)).scalars())
    )


async def test_a_page_without_a_session_sends_to_sign_in_and_back(console: Server) -> None:
    answer = await console.client.get("/dashboard/users?x=1")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard/sign-in?next=/dashboard/users%3Fx%3D1"
    form = await console.client.get(answer.headers["location"])
    assert 'name="next" value="/dashboard/users?x=1"' in form.text
    signed = await console.client.post(
        "/dashboard/sign-in",
        data={
            "email": "owner@example.com",
            "password": PASSWORD,
            "csrf_token": csrf_token_in(form.text),
            "next": "/dashboard/users?x=1",
        },
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/dashboard/users?x=1"


async def test_sign_in_never_sends_to_another_site(console: Server) -> None:
    for target in [
        "https://evil.example/",
        "//evil.example/dashboard",
        "/dashboard/..//evil.example",
        "/v1/keys",
    ]:
        async with another_client(console) as client:
            form = await client.get("/dashboard/sign-in")
            signed = await client.post(
                "/dashboard/sign-in",
                data={
                    "email": "owner@example.com",
                    "password": PASSWORD,
                    "csrf_token": csrf_token_in(form.text),
                    "next": target,
                },
            )
        assert signed.headers["location"] == "/dashboard", target


async def test_the_session_cookie_is_http_only_strict_and_scoped(console: Server) -> None:
    form = await console.client.get("/dashboard/sign-in")
    signed = await console.client.post(
        "/dashboard/sign-in",
        data={"email": "owner@example.com", "password": PASSWORD, "csrf_token": csrf_token_in(form.text)},
    )
    cookie = next(
        value for value in signed.headers.get_list("set-cookie") if value.startswith("rejoinder_console=")
    )
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags
    assert "samesite=strict" in flags
    assert "path=/dashboard" in flags
    assert "secure" not in flags  # plain http here; over https the cookie is Secure
    secret = cookie.split(";")[0].split("=", 1)[1]
    stored = await console.store.database.read(
        lambda connection: (
            connection.execute(sa.text("SELECT session_hash FROM console_sessions")).scalars().all()
        )
    )
    assert len(stored) == 1 and secret not in stored[0] and stored[0] != secret


async def test_over_https_the_cookie_is_secure(console: Server) -> None:
    transport = httpx.ASGITransport(app=console.app, raise_app_exceptions=False, client=("127.0.0.1", 50002))
    async with httpx.AsyncClient(transport=transport, base_url="https://rejoinder.test") as client:
        form = await client.get("/dashboard/sign-in")
        signed = await client.post(
            "/dashboard/sign-in",
            data={"email": "owner@example.com", "password": PASSWORD, "csrf_token": csrf_token_in(form.text)},
        )
    cookie = next(
        value for value in signed.headers.get_list("set-cookie") if value.startswith("rejoinder_console=")
    )
    assert "secure" in [part.strip().lower() for part in cookie.split(";")]


async def test_a_wrong_password_is_a_form_again_and_a_flood_waits(console: Server) -> None:
    form = await console.client.get("/dashboard/sign-in")
    token = csrf_token_in(form.text)
    for _ in range(10):
        wrong = await console.client.post(
            "/dashboard/sign-in",
            data={"email": "owner@example.com", "password": "guess", "csrf_token": token},
        )
        assert wrong.status_code == 401
        assert "The email or password is not right" in wrong.text
        assert "rejoinder_console=" not in wrong.headers.get("set-cookie", "")
    throttled = await console.client.post(
        "/dashboard/sign-in", data={"email": "owner@example.com", "password": PASSWORD, "csrf_token": token}
    )
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
    assert "Too many failed sign-ins" in throttled.text


async def test_pages_carry_the_security_headers(console: Server) -> None:
    signed = await sign_in(console.client, console.store, "owner@example.com")
    for path in ["/dashboard/sign-in", "/dashboard", "/dashboard/users", "/dashboard/no-such-page"]:
        answer = await signed.client.get(path, follow_redirects=False)
        assert answer.headers["content-security-policy"] == CSP, path
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "same-origin"
        assert answer.headers["cache-control"] == "no-store"
    page = await signed.client.get("/dashboard")
    assert "http://" not in page.text and "https://" not in page.text  # nothing loaded from another host
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline the CSP would block
    css = await signed.client.get("/dashboard/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert (await signed.client.get("/dashboard/static/..%2Fsdk%2Falli.js")).status_code == 404


BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def assert_console_error_page(answer: httpx.Response, status: int, *texts: str) -> None:
    assert answer.status_code == status
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.headers["content-security-policy"] == CSP
    assert int(answer.headers["content-length"]) == len(answer.content)
    assert "http://" not in answer.text and "https://" not in answer.text  # nothing from another host
    assert "<script>" not in answer.text and "style=" not in answer.text  # nothing inline
    assert 'href="/dashboard/static/console.css' in answer.text  # the console's own look
    for text in texts:
        assert text in answer.text


async def test_an_unknown_page_is_the_consoles_404_page_for_a_browser_and_a_problem_for_a_script(
    console: Server,
) -> None:
    signed_out = await console.client.get("/dashboard/no-such-page", headers=BROWSER)
    assert_console_error_page(signed_out, 404, "Page not found", 'href="/dashboard"')
    signed = await sign_in(console.client, console.store, "owner@example.com")
    page = await signed.client.get("/dashboard/no/such/page", headers=BROWSER)
    assert_console_error_page(page, 404, "Page not found")
    assert "/openapi.json" not in page.text
    wrong_method = await signed.client.delete("/dashboard/users", headers=BROWSER)
    assert_console_error_page(wrong_method, 405, "Not allowed here")
    assert "GET" in wrong_method.headers["allow"]

    for accept in ("application/json", "*/*"):
        script = await signed.client.get("/dashboard/no-such-page", headers={"Accept": accept})
        assert script.status_code == 404
        assert script.headers["content-type"] == "application/problem+json"
        assert script.json()["type"] == "not_found"
    api = await console.client.get("/v1/no-such-route", headers=BROWSER)  # the API's answers stay problems
    assert api.headers["content-type"] == "application/problem+json"


async def test_a_database_outage_is_the_consoles_503_page_for_a_browser_and_a_problem_for_a_script(
    console: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed = await sign_in(console.client, console.store, "owner@example.com")

    async def unreachable(*_args: object, **_kwargs: object) -> None:
        raise StoreUnavailable("database unavailable: connection refused")

    monkeypatch.setattr(console.store.conversations, "find", unreachable)
    monkeypatch.setattr(console.store.users, "by_email", unreachable)
    page = await signed.client.get("/dashboard/conversations", headers=BROWSER)
    assert_console_error_page(page, 503, "Service unavailable", "The database is not reachable right now.")
    assert page.headers["retry-after"] == "2"
    assert "connection refused" not in page.text
    assert "owner@example.com" in page.text  # signed in: the console's nav and who is signed in

    async with another_client(console) as stranger:
        form = await stranger.get("/dashboard/sign-in")
        signing_in = await stranger.post(
            "/dashboard/sign-in",
            data={"email": "owner@example.com", "password": PASSWORD, "csrf_token": csrf_token_in(form.text)},
            headers=BROWSER,
        )
    assert_console_error_page(signing_in, 503, "The database is not reachable right now.")

    script = await signed.client.get("/dashboard/conversations", headers={"Accept": "application/json"})
    assert script.status_code == 503 and script.headers["content-type"] == "application/problem+json"
    assert script.json()["type"] == "unavailable" and script.headers["retry-after"] == "2"


def problem_app(body: bytes, *, chunks: int = 1, content_type: str = "application/problem+json") -> ASGIApp:
    """An app that answers every request 503 with ``body`` in ``chunks`` parts, as the server's refusals do."""

    async def app(_scope: Scope, _receive: Receive, send: Send) -> None:
        headers = [(b"content-type", content_type.encode()), (b"retry-after", b"2")]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        size = -(-len(body) // chunks)
        for n in range(chunks):
            part = body[n * size : (n + 1) * size]
            await send({"type": "http.response.body", "body": part, "more_body": n < chunks - 1})

    return app


async def test_a_problem_in_parts_is_one_page_and_a_long_or_other_answer_passes_as_it_is() -> None:
    problem = json.dumps({"type": "unavailable", "title": "Busy", "status": 503, "detail": "Try again soon."})

    async def answer(app: ASGIApp, path: str = "/dashboard/x") -> httpx.Response:
        transport = httpx.ASGITransport(app=ConsoleHtmlProblems(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://rejoinder.test") as client:
            return await client.get(path, headers=BROWSER)

    page = await answer(problem_app(problem.encode(), chunks=3))
    assert page.status_code == 503 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert "Busy" in page.text and "Try again soon." in page.text and page.headers["retry-after"] == "2"
    assert int(page.headers["content-length"]) == len(page.content)

    long = json.dumps({"title": "Busy", "detail": "x" * MAX_PROBLEM_BYTES}).encode()
    passed = await answer(problem_app(long, chunks=4))
    assert passed.headers["content-type"] == "application/problem+json" and passed.content == long
    csv = await answer(problem_app(b"a,b\n", content_type="text/csv"))
    assert csv.headers["content-type"] == "text/csv" and csv.content == b"a,b\n"
    unreadable = await answer(problem_app(b"not json"))
    assert (
        unreadable.headers["content-type"] == "application/problem+json" and unreadable.content == b"not json"
    )
    api = await answer(problem_app(problem.encode()), "/v1/conversations")
    assert api.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ({}, None),  # no token
        ({}, "0" * 64),  # a wrong token
        ({"Origin": "https://evil.example"}, "right"),  # the right token, from another site
        ({"Sec-Fetch-Site": "cross-site"}, "right"),
    ],
)
async def test_a_change_without_its_csrf_proof_is_refused_and_changes_nothing(
    console: Server, headers: dict[str, str], token: str | None
) -> None:
    signed = await sign_in(console.client, console.store, "owner@example.com")
    data = {"email": "mallory@example.com", "role": "owner", "password": "mallory's password"}
    if token is not None:
        data["csrf_token"] = signed.csrf_token if token == "right" else token
    refused = await signed.client.post("/dashboard/users", data=data, headers=headers)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("text/html")
    assert "Nothing was changed" in refused.text
    assert await user_emails(console) == ["owner@example.com"]
    # The same form with its token, from this site, works.
    made = await signed.client.post(
        "/dashboard/users",
        data={**data, "csrf_token": signed.csrf_token},
        headers={"Origin": "http://rejoinder.test", "Sec-Fetch-Site": "same-origin"},
    )
    assert made.status_code == 303
    assert await user_emails(console) == ["mallory@example.com", "owner@example.com"]


async def test_another_sessions_token_is_not_this_ones(console: Server) -> None:
    await create_user(console.store, "second@example.com", "owner")
    first = await sign_in(console.client, console.store, "owner@example.com")
    async with another_client(console) as other_client:
        second = await sign_in(other_client, console.store, "second@example.com")
        assert second.csrf_token != first.csrf_token
        refused = await other_client.post(
            "/dashboard/users",
            data={
                "email": "x@example.com",
                "role": "viewer",
                "password": PASSWORD,
                "csrf_token": first.csrf_token,
            },
        )
    assert refused.status_code == 403


async def test_the_sign_in_form_needs_its_own_token(console: Server) -> None:
    forged = await console.client.post(
        "/dashboard/sign-in", data={"email": "owner@example.com", "password": PASSWORD, "csrf_token": "x"}
    )
    assert forged.status_code == 403
    assert "rejoinder_console=" not in forged.headers.get("set-cookie", "")


@pytest.mark.parametrize("role", ["viewer", "editor"])
async def test_only_owners_manage_users(console: Server, role: str) -> None:
    await create_user(console.store, f"{role}@example.com", role)
    signed = await sign_in(console.client, console.store, f"{role}@example.com")
    page = await signed.client.get("/dashboard/users")
    assert page.status_code == 403 and "needs the owner role" in page.text
    overview = await signed.client.get("/dashboard")
    assert overview.status_code == 200
    assert f'<span class="role role-{role}"' in overview.text
    assert 'href="/dashboard/users"' not in overview.text  # not in the nav either
    owner = await console.store.users.by_email("owner@example.com")
    assert owner is not None
    forged = [
        ("/dashboard/users", {"email": "mallory@example.com", "role": "owner", "password": PASSWORD}),
        (f"/dashboard/users/{owner.id}/disable", {}),
        (f"/dashboard/users/{owner.id}/password", {"password": "mallory's password"}),
    ]
    for path, data in forged:
        refused = await signed.client.post(path, data={**data, "csrf_token": signed.csrf_token})
        assert refused.status_code == 403, path
    assert await user_emails(console) == sorted(["owner@example.com", f"{role}@example.com"])
    still = await console.store.users.by_email("owner@example.com")
    assert still == owner


async def test_a_change_without_a_session_is_refused(console: Server) -> None:
    refused = await console.client.post(
        "/dashboard/users", data={"email": "x@example.com", "role": "owner", "password": PASSWORD}
    )
    assert refused.status_code == 403
    assert await user_emails(console) == ["owner@example.com"]


async def test_owners_manage_users_and_each_change_is_audited_with_who(console: Server) -> None:
    signed = await sign_in(console.client, console.store, "owner@example.com")
    made = await signed.client.post(
        "/dashboard/users",
        data={
            "email": "Eve@Example.com",
            "role": "editor",
            "password": PASSWORD,
            "csrf_token": signed.csrf_token,
        },
    )
    assert made.status_code == 303
    listing = await signed.client.get(made.headers["location"])
    assert "The user was created." in listing.text and "eve@example.com" in listing.text
    duplicate = await signed.client.post(
        "/dashboard/users",
        data={
            "email": "eve@example.com",
            "role": "viewer",
            "password": PASSWORD,
            "csrf_token": signed.csrf_token,
        },
    )
    assert duplicate.status_code == 409 and "already a console user" in duplicate.text
    short = await signed.client.post(
        "/dashboard/users",
        data={
            "email": "zed@example.com",
            "role": "viewer",
            "password": "short",
            "csrf_token": signed.csrf_token,
        },
    )
    assert short.status_code == 400 and "at least 12 characters" in short.text
    eve = await console.store.users.by_email("eve@example.com")
    assert eve is not None
    async with another_client(console) as eve_client:
        eve_signed = await sign_in(eve_client, console.store, "eve@example.com")
        reset = await signed.client.post(
            f"/dashboard/users/{eve.id}/password",
            data={"password": "another long password", "csrf_token": signed.csrf_token},
        )
        assert reset.status_code == 303
        assert (await eve_signed.client.get("/dashboard")).status_code == 303  # signed out by the reset
        await sign_in(eve_client, console.store, "eve@example.com", "another long password")
        disabled = await signed.client.post(
            f"/dashboard/users/{eve.id}/disable", data={"csrf_token": signed.csrf_token}
        )
        assert disabled.status_code == 303
        assert (await eve_client.get("/dashboard")).status_code == 303
    rows = await console.store.database.read(
        lambda connection: connection.execute(sa.select(audit_events).order_by(audit_events.c.id)).all()
    )
    changes = [
        (row.kind, row.detail["key_id"], row.detail.get("user"))
        for row in rows
        if row.kind != "console_signed_in"
    ]
    assert changes == [
        ("console_user_created", "cli", "owner@example.com"),
        ("console_user_created", "console:owner@example.com", "eve@example.com"),
        ("console_password_reset", "console:owner@example.com", "eve@example.com"),
        ("console_user_disabled", "console:owner@example.com", "eve@example.com"),
    ]
    assert all(row.ip == "127.0.0.1" for row in rows if row.detail["key_id"].startswith("console:"))


async def test_the_last_owner_is_offered_no_disable_button(console: Server) -> None:
    signed = await sign_in(console.client, console.store, "owner@example.com")
    owner = signed.user
    alone = await signed.client.get("/dashboard/users")
    assert f"/dashboard/users/{owner.id}/disable" not in alone.text
    assert "The only owner: make another owner before disabling this one." in alone.text
    second = await create_user(console.store, "second-owner@example.com", "owner")
    two = await signed.client.get("/dashboard/users")
    assert f"/dashboard/users/{owner.id}/disable" in two.text
    assert f"/dashboard/users/{second.id}/disable" in two.text
    assert "The only owner" not in two.text


async def test_signing_out_ends_the_session(console: Server) -> None:
    signed = await sign_in(console.client, console.store, "owner@example.com")
    cookie = console.client.cookies.get("rejoinder_console")
    out = await signed.client.post("/dashboard/sign-out", data={"csrf_token": signed.csrf_token})
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/sign-in"
    # Even the old cookie, sent again, is no session any more.
    console.client.cookies.set("rejoinder_console", cookie or "", domain="rejoinder.test", path="/dashboard")
    assert (await console.client.get("/dashboard")).status_code == 303


async def test_a_console_session_never_reaches_the_logs(
    console: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    signed = await sign_in(console.client, console.store, "owner@example.com")
    secret = console.client.cookies.get("rejoinder_console")
    assert secret is not None and secret.startswith("rjc_")
    # Pasted where a path goes, the access log would carry it.
    lost = await signed.client.get(f"/dashboard/conversations/{secret}")
    assert lost.status_code == 404

    lines = [
        JsonFormatter().format(record) for record in caplog.records if not record.name.startswith("httpx")
    ]
    assert any("/dashboard/conversations/rjc_[redacted]" in line for line in lines)
    assert not any(secret[len("rjc_") :] in line for line in lines)


async def test_an_idle_session_ends(console: Server) -> None:
    signed = await sign_in(console.client, console.store, "owner@example.com")
    accounts = console.app.state.accounts
    real_clock = accounts.clock
    accounts.clock = lambda: real_clock() + timedelta(seconds=1801)
    try:
        answer = await signed.client.get("/dashboard")
    finally:
        accounts.clock = real_clock
    assert answer.status_code == 303 and answer.headers["location"].startswith("/dashboard/sign-in")


async def test_a_hostile_form_is_a_clear_refusal_never_a_500(console: Server) -> None:
    signed = await sign_in(console.client, console.store, "owner@example.com")
    with_a_file = await signed.client.post(
        "/dashboard/users",
        data={"csrf_token": signed.csrf_token, "email": "x@example.com", "role": "viewer"},
        files={"password": ("password.txt", b"a long enough password")},
    )
    assert with_a_file.status_code == 400
    assert with_a_file.headers["content-type"].startswith("text/html")
    too_large = await signed.client.post(
        "/dashboard/users", data={"csrf_token": signed.csrf_token, "email": "x" * 20_000}
    )
    assert too_large.status_code == 413
    not_a_form = await signed.client.post(
        "/dashboard/users",
        content=b"\xff\xfe{",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert not_a_form.status_code == 403  # no readable token in it
    long_email = await signed.client.post(
        "/dashboard/users",
        data={
            "csrf_token": signed.csrf_token,
            "email": "a" * 300 + "@example.com",
            "role": "viewer",
            "password": PASSWORD,
        },
    )
    assert long_email.status_code == 400 and "email address" in long_email.text
    assert await user_emails(console) == ["owner@example.com"]


async def test_a_change_that_waits_too_long_for_the_hasher_says_so(
    console: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed = await sign_in(console.client, console.store, "owner@example.com")
    monkeypatch.setattr(accounts_module, "HASH_QUEUE_TIMEOUT", 0.2)
    hashing = console.app.state.accounts._hashing
    held = 0
    while not hashing.locked():  # every hasher busy (with sign-ins, say)
        await hashing.acquire()
        held += 1
    try:
        busy = await signed.client.post(
            "/dashboard/users",
            data={
                "email": "x@example.com",
                "role": "viewer",
                "password": PASSWORD,
                "csrf_token": signed.csrf_token,
            },
        )
    finally:
        for _ in range(held):
            hashing.release()
    assert busy.status_code == 503
    assert "busy checking passwords" in busy.text
    assert await user_emails(console) == ["owner@example.com"]
