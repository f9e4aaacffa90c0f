"""The ``rejoinder`` command line.

Each command module imports at its top only what typer needs to read its options; the rest is imported inside the
command, so that ``rejoinder --help`` and every command start without loading what they do not use.
"""

from __future__ import annotations

from rejoinder.cli import chat, db, demo, keys, serve, skills, testing, users
from rejoinder.cli.typer_app import new_app

app = new_app(
    name="rejoinder",
    help="Resumable chatbot conversations: check and run bots, chat in the terminal, serve them.",
    pretty_exceptions_enable=False,
)
app.add_typer(skills.app, name="skills")
app.add_typer(db.app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(users.app, name="users")
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("chat")(chat.chat)
app.command("test")(testing.test)


def main() -> None:
    app()
