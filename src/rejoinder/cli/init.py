"""``rejoinder init``: scaffold a working bot, with conversation tests that pass as it stands."""

from __future__ import annotations

import json
import re
import string
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Annotated, NoReturn

import typer

# The bot's files, as package data; ``rejoinder.yaml`` is filled in with the bot's id and name.
SCAFFOLD = "scaffold"
SETTINGS_TEMPLATE = "rejoinder.yaml"


def init(
    bot_dir: Annotated[Path, typer.Argument(help="The directory to create the bot in (new or empty).")],
    force: Annotated[
        bool,
        typer.Option("--force", help="Write into a directory that is not empty, replacing the bot's files."),
    ] = False,
) -> None:
    """Scaffold a bot: its settings, two skills and conversation tests that pass."""
    if bot_dir.exists() and not bot_dir.is_dir():
        _fail(f"{bot_dir} is a file, not a directory")
    if bot_dir.is_dir() and any(bot_dir.iterdir()) and not force:
        _fail(
            f"{bot_dir} is not empty; choose a new directory, or pass --force to write the bot's files into it"
        )
    name = bot_dir.resolve().name
    values = {"bot_id": bot_id_for(name), "bot_name": json.dumps(name or "My bot")}
    written: list[Path] = []
    try:
        _copy(resources.files("rejoinder.cli") / SCAFFOLD, bot_dir, values, written)
    except OSError as exc:
        _fail(f"cannot write {exc.filename or bot_dir}: {exc.strerror or exc}")
    for path in written:
        typer.echo(f"created {path}")
    shown = _shell_word(str(bot_dir))
    typer.echo(
        f"\nThe bot {values['bot_id']!r} is ready. Next:\n"
        f"  rejoinder test {shown}          # run its conversation tests\n"
        f"  rejoinder chat {shown}          # talk to it in the terminal\n"
        f"  rejoinder keys create {shown}   # keys for the web widget and the admin API\n"
        f"  rejoinder serve {shown} --reload   # serve it; skill edits apply as you save\n"
        f"Edit {bot_dir / 'skills'} (docs/skills.md) and check it with: rejoinder skills check {shown}"
    )


def bot_id_for(name: str) -> str:
    """A bot id (``[a-z0-9_-]+``) made from a directory's name."""
    return re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_") or "bot"


def _copy(folder: Traversable, target: Path, values: dict[str, str], written: list[Path]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for item in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if item.name.startswith((".", "__")):
            continue
        if item.is_dir():
            _copy(item, target / item.name, values, written)
            continue
        text = item.read_text(encoding="utf-8")
        if item.name == SETTINGS_TEMPLATE:
            text = string.Template(text).substitute(values)
        path = target / item.name
        path.write_text(text, encoding="utf-8")
        written.append(path)


def _shell_word(text: str) -> str:
    return text if re.fullmatch(r"[\w./@:+-]+", text) else "'" + text.replace("'", "'\\''") + "'"


def _fail(reason: str) -> NoReturn:
    typer.echo(f"rejoinder init: {reason}", err=True)
    raise typer.Exit(1)
