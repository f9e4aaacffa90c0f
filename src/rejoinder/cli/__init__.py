"""The ``rejoinder`` command line."""

from __future__ import annotations

import typer

from rejoinder.cli import chat, db, demo, keys, serve, skills, testing

app = typer.Typer(
    name="rejoinder",
    help="Resumable chatbot conversations: check and run bots, chat in the terminal, serve them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(skills.app, name="skills")
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("chat")(chat.chat)
app.command("test")(testing.test)


def main() -> None:
    app()
