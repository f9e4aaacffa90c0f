"""The console for tests: accounts made directly in a store, and clients or browser pages signed in with them.

- :func:`create_user` — an account of a role in a store (cheap argon2id parameters, unless given a hasher).
- :func:`create_user_in` — the same from synchronous code, in the database at a URL (a browser test's server).
- :func:`in_store` — any such work from synchronous code: a coroutine given a store of the database at a URL.
- :func:`sign_in` — an httpx client signed in through the real form: it keeps the cookie; returns the CSRF token.
- :func:`sign_in_page` — a Playwright page signed in through the real form.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from argon2 import PasswordHasher

from rejoinder.service.accounts import CLI_ACTOR, Accounts, SignInLimits
from rejoinder.store import Store
from rejoinder.store.records import ConsoleUserRecord

if TYPE_CHECKING:
    from playwright.sync_api import Page

PASSWORD = "correct horse battery staple"
# argon2id as the product makes it, with parameters cheap enough for tests that make many accounts.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class SignedInClient:
    """An httpx client holding a console session cookie, and the session's CSRF token for the forms it posts."""

    client: httpx.AsyncClient
    csrf_token: str
    user: ConsoleUserRecord


async def create_user(
    store: Store,
    email: str,
    role: str = "owner",
    password: str = PASSWORD,
    *,
    hasher: PasswordHasher = FAST_HASHER,
    disabled: bool = False,
) -> ConsoleUserRecord:
    """An account of ``role`` in ``store``, made by the accounts service as ``rejoinder users create`` makes one."""
    accounts = Accounts(store.users, limits=SignInLimits.in_memory(), hasher=hasher)
    user = await accounts.create_user(email, role, password, CLI_ACTOR)
    if disabled:
        user = await accounts.disable_user(user.id, CLI_ACTOR)
    return user


def in_store(database_url: str, work: Callable[[Store], Awaitable[object]]) -> None:
    """``work`` on a store of the database at ``database_url`` (a server process's, say), from synchronous code: on
    a thread and event loop of its own, since Playwright's sync API holds an event loop on a browser test's."""

    async def run() -> None:
        store = Store.from_url(database_url)
        try:
            await work(store)
        finally:
            await store.close()

    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, run()).result()


def create_user_in(database_url: str, email: str, role: str = "owner", password: str = PASSWORD) -> None:
    """:func:`create_user` from synchronous code (a browser test), in the database at ``database_url``."""
    in_store(database_url, lambda store: create_user(store, email, role, password))


def csrf_token_in(html: str) -> str:
    """The CSRF token of the first form of a console page."""
    found = _CSRF_INPUT.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


async def sign_in(
    client: httpx.AsyncClient, store: Store, email: str, password: str = PASSWORD
) -> SignedInClient:
    """Sign ``client`` in through the sign-in form; it keeps the session cookie. Returns the CSRF token of the
    session (read from the Overview page) with the client."""
    form = await client.get("/dashboard/sign-in")
    assert form.status_code == 200, form.text
    answer = await client.post(
        "/dashboard/sign-in",
        data={
            "email": email,
            "password": password,
            "csrf_token": csrf_token_in(form.text),
            "next": "/dashboard",
        },
    )
    assert answer.status_code == 303, answer.text
    overview = await client.get("/dashboard")
    assert overview.status_code == 200, overview.text
    user = await store.users.by_email(email)
    assert user is not None
    return SignedInClient(client, csrf_token_in(overview.text), user)


def sign_in_page(page: Page, base_url: str, email: str, password: str = PASSWORD) -> None:
    """Sign a Playwright page in through the sign-in form of the server at ``base_url``; it ends on Overview."""
    page.goto(f"{base_url}/dashboard/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/dashboard")
