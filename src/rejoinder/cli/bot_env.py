"""The variables a bot lists under ``env:`` must be set before it serves or chats.

Without them a skill reads an empty ``env.NAME`` and fails only when a customer reaches it ("logging in is not
possible right now"): better to refuse at start and name the variable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NoReturn

import typer

from rejoinder.skills import CONFIG_FILE, Bot

# A configuration the user must fix, as for a usage error.
MISSING_ENV_EXIT = 2


def missing_env(bot: Bot, environ: Mapping[str, str]) -> list[str]:
    """The names under the bot's ``env:`` that ``environ`` lacks or leaves empty, in the order listed."""
    return [name for name in bot.config.env if not environ.get(name)]


def require_env(
    command: str, bots: Iterable[tuple[Path, Bot]], environ: Mapping[str, str] | None = None
) -> None:
    """Exit with :data:`MISSING_ENV_EXIT` and one line per missing variable when any bot lacks one."""
    env = os.environ if environ is None else environ
    lines = [
        f"rejoinder {command} {path}: {name} is {'empty' if name in env else 'not set'} "
        f"(listed under env: in {path / CONFIG_FILE})"
        for path, bot in bots
        for name in missing_env(bot, env)
    ]
    if lines:
        _exit(lines)


def _exit(lines: list[str]) -> NoReturn:
    for line in lines:
        typer.echo(line, err=True)
    raise typer.Exit(MISSING_ENV_EXIT)
