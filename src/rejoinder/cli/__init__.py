"""The ``rejoinder`` command line.

Each command module imports at its top only what typer needs to read its options; the rest is imported inside the
command, so that ``rejoinder --help`` and every command start without loading what they do not use.
"""

from __future__ import annotations

from typing import Annotated

import typer

from rejoinder import __version__
from rejoinder.cli import (
    audit,
    chat,
    conversations,
    db,
    demo,
    init,
    keys,
    serve,
    skills,
    testing,
    tokens,
    users,
)
from rejoinder.cli.typer_app import new_app

app = new_app(
    name="rejoinder",
    help="Resumable chatbot conversations: check and run bots, chat in the terminal, serve them.",
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"rejoinder {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Resumable chatbot conversations: check and run bots, chat in the terminal, serve them."""


app.add_typer(skills.app, name="skills")
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(users.app, name="users")
app.add_typer(conversations.app, name="conversations")
app.add_typer(tokens.app, name="tokens")
app.command("audit")(audit.audit)
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("chat")(chat.chat)
app.command("test")(testing.test)
app.command("init")(init.init)


def main() -> None:
    app()
