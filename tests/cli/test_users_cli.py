"""``rejoinder users create | list | disable | reset-password`` on a SQLite database of their own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from typer.testing import CliRunner

from rejoinder.cli import app, users
from rejoinder.config import get_settings
from rejoinder.service.accounts import Accounts, SignInLimits
from rejoinder.service.errors import SignInRefused
from rejoinder.store import Store

runner = CliRunner()
PASSWORD = "a long enough password"


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'rejoinder.db'}"
    monkeypatch.setenv("REJOINDER_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def signs_in(url: str, email: str, password: str) -> bool:
    async def attempt() -> bool:
        store = Store.from_url(url)
        try:
            accounts = Accounts(store.users, limits=SignInLimits.in_memory(), hasher=PasswordHasher())
            await accounts.sign_in(email, password)
        except SignInRefused:
            return False
        finally:
            await store.close()
        return True

    return asyncio.run(attempt())


def listed(url: str) -> list[dict[str, object]]:
    result = runner.invoke(app, ["users", "list", "--json"])
    assert result.exit_code == 0, result.output
    found: list[dict[str, object]] = json.loads(result.stdout)
    return found


def test_create_with_password_stdin_then_sign_in(database: str) -> None:
    result = runner.invoke(
        app,
        ["users", "create", "Ada@Example.com", "--role", "owner", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "Created owner ada@example.com; they can sign in at /dashboard.\n"
    assert signs_in(database, "ada@example.com", PASSWORD)
    assert not signs_in(database, "ada@example.com", PASSWORD + "x")


def test_create_asks_twice_on_a_terminal(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(users, "_interactive", lambda: True)
    mismatch = runner.invoke(
        app, ["users", "create", "bob@example.com", "--role", "editor"], input=f"{PASSWORD}\nsomething else\n"
    )
    assert mismatch.exit_code != 0
    assert listed(database) == []
    result = runner.invoke(
        app, ["users", "create", "bob@example.com", "--role", "editor"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output  # hidden input is not echoed
    assert signs_in(database, "bob@example.com", PASSWORD)


def test_without_a_terminal_the_password_must_come_by_stdin(database: str) -> None:
    result = runner.invoke(
        app, ["users", "create", "bob@example.com", "--role", "viewer"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 1
    assert "pass --password-stdin" in result.stderr
    assert listed(database) == []


def test_a_short_password_and_a_duplicate_email_are_refused(database: str) -> None:
    short = runner.invoke(
        app, ["users", "create", "ada@example.com", "--role", "owner", "--password-stdin"], input="short\n"
    )
    assert short.exit_code == 1
    assert "rejoinder users create: the password must have at least 12 characters" in short.stderr
    assert listed(database) == []
    first = runner.invoke(
        app,
        ["users", "create", "ada@example.com", "--role", "owner", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert first.exit_code == 0, first.output
    again = runner.invoke(
        app,
        ["users", "create", "ADA@example.com", "--role", "viewer", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert again.exit_code == 1
    assert "There is already a console user ada@example.com." in again.stderr
    assert [user["role"] for user in listed(database)] == ["owner"]
    bad_role = runner.invoke(app, ["users", "create", "x@example.com", "--role", "admin", "--password-stdin"])
    assert bad_role.exit_code == 2


def test_list_disable_and_reset_password(database: str) -> None:
    assert "No console users yet" in runner.invoke(app, ["users", "list"]).stdout
    for email, role in [("ada@example.com", "owner"), ("bob@example.com", "viewer")]:
        made = runner.invoke(
            app, ["users", "create", email, "--role", role, "--password-stdin"], input=PASSWORD + "\n"
        )
        assert made.exit_code == 0, made.output
    table = runner.invoke(app, ["users", "list"]).stdout.splitlines()
    assert [line.split()[:3] for line in table] == [
        ["ada@example.com", "owner", "active"],
        ["bob@example.com", "viewer", "active"],
    ]

    reset = runner.invoke(
        app, ["users", "reset-password", "bob@example.com", "--password-stdin"], input="the new password\n"
    )
    assert reset.exit_code == 0, reset.output
    assert not signs_in(database, "bob@example.com", PASSWORD)
    assert signs_in(database, "bob@example.com", "the new password")

    disabled = runner.invoke(app, ["users", "disable", "BOB@example.com"])
    assert disabled.exit_code == 0, disabled.output
    assert not signs_in(database, "bob@example.com", "the new password")
    items = listed(database)
    assert [(item["email"], item["status"]) for item in items] == [
        ("ada@example.com", "active"),
        ("bob@example.com", "disabled"),
    ]
    assert set(items[0]) == {"id", "email", "role", "status", "created_at", "disabled_at"}

    last_owner = runner.invoke(app, ["users", "disable", "ada@example.com"])
    assert last_owner.exit_code == 1 and "only owner left" in last_owner.stderr
    unknown = runner.invoke(app, ["users", "disable", "nobody@example.com"])
    assert unknown.exit_code == 1 and "There is no console user nobody@example.com." in unknown.stderr
