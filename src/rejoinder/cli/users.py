"""``rejoinder users …``: the console's accounts (create, list, disable, reset a password), in the configured
database. Every change is audited as made by ``cli``."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from rejoinder.cli.configured import fail, on_store
from rejoinder.cli.typer_app import new_app

if TYPE_CHECKING:
    from rejoinder.service.accounts import Accounts
    from rejoinder.service.resume import Actor
    from rejoinder.store.records import ConsoleUserRecord

T = TypeVar("T")

app = new_app(help="Console users: who may sign in to /dashboard, and with which role.")


class Role(StrEnum):
    owner = "owner"
    editor = "editor"
    viewer = "viewer"


PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of standard input (for scripts)."
    ),
]


@app.command("create")
def create(
    email: Annotated[str, typer.Argument(help="The user's email: what they sign in with.")],
    role: Annotated[Role, typer.Option("--role", help="owner, editor or viewer.", case_sensitive=False)],
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a console user. The password is asked twice (hidden), or read with --password-stdin."""
    password = _password(password_stdin, "create")
    user = _run("create", lambda accounts: accounts.create_user(email, role.value, password, _cli_actor()))
    typer.echo(f"Created {user.role} {user.email}; they can sign in at /dashboard.")


@app.command("list")
def list_users(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array of users.")] = False,
) -> None:
    """List the console users: email, role, status and when each was created."""
    users = _run("list", lambda accounts: accounts.list_users())
    if as_json:
        typer.echo(json.dumps([_as_json(user) for user in users]))
        return
    if not users:
        typer.echo(
            "No console users yet: create the first owner with `rejoinder users create EMAIL --role owner`."
        )
        return
    width = max(len(user.email) for user in users)
    for user in users:
        status = "disabled" if user.disabled_at else "active"
        created = user.created_at.strftime("%Y-%m-%d %H:%M")
        typer.echo(f"{user.email:<{width}}  {user.role:<6}  {status:<8}  created {created} UTC")


@app.command("disable")
def disable(email: Annotated[str, typer.Argument(help="The user's email.")]) -> None:
    """Disable a console user and end their sessions (the last owner who can sign in cannot be disabled)."""

    async def work(accounts: Accounts) -> ConsoleUserRecord:
        user = await accounts.user_by_email(email)
        return await accounts.disable_user(user.id, _cli_actor())

    user = _run("disable", work)
    typer.echo(f"Disabled {user.email}; their sessions have ended.")


@app.command("reset-password")
def reset_password(
    email: Annotated[str, typer.Argument(help="The user's email.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Give a console user a new password and end their sessions."""
    password = _password(password_stdin, "reset-password")

    async def work(accounts: Accounts) -> ConsoleUserRecord:
        user = await accounts.user_by_email(email)
        return await accounts.reset_password(user.id, password, _cli_actor())

    user = _run("reset-password", work)
    typer.echo(f"Changed the password of {user.email}; their sessions have ended.")


def _password(from_stdin: bool, command: str) -> str:
    from rejoinder.service.accounts import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

    if from_stdin:
        password = sys.stdin.readline(MAX_PASSWORD_LENGTH + 2).rstrip("\r\n")
    elif _interactive():
        password = typer.prompt(
            f"Password (at least {MIN_PASSWORD_LENGTH} characters)", hide_input=True, confirmation_prompt=True
        )
    else:
        _fail(command, "standard input is not a terminal: pass --password-stdin and the password on one line")
    if len(password) < MIN_PASSWORD_LENGTH:
        _fail(command, f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        _fail(command, f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
    return password


def _interactive() -> bool:
    return sys.stdin.isatty()


def _cli_actor() -> Actor:
    from rejoinder.service.accounts import CLI_ACTOR

    return CLI_ACTOR


def _run(command: str, work: Callable[[Accounts], Awaitable[T]]) -> T:
    from rejoinder.service.accounts import Accounts, SignInLimits

    # The command line signs nobody in: its limits are never asked.
    return on_store(
        f"users {command}", lambda store: work(Accounts(store.users, limits=SignInLimits.in_memory()))
    )


def _as_json(user: ConsoleUserRecord) -> dict[str, object]:
    from rejoinder.store.records import iso_z

    return {
        "id": user.id,
        "email": user.email,
        "role": user.role,
        "status": "disabled" if user.disabled_at else "active",
        "created_at": iso_z(user.created_at),
        "disabled_at": iso_z(user.disabled_at) if user.disabled_at else None,
    }


def _fail(command: str, reason: str) -> NoReturn:
    fail(f"users {command}", reason)
