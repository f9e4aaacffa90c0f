"""What the operator's commands (``conversations``, ``tokens``, ``audit``) share: the service on the configured
database, their errors as one line each, times and tables for people, JSON for scripts.

Every change they make is audited as made by ``cli``. A command given a bot directory works on that bot; one given
only a conversation or token id works on the bots the database has recorded (those a server has run).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from rejoinder.cli.configured import on_store

if TYPE_CHECKING:
    from rejoinder.service import ConversationService
    from rejoinder.skills import Bot
    from rejoinder.store import Store

T = TypeVar("T")

# Columns of ids, printed whole whatever the terminal's width.
_ID_COLUMNS = frozenset({"Id", "Conversation", "Token"})


class OperatorError(Exception):
    """A refusal to print as one line and exit 1."""


Work = Callable[["ConversationService", str], Awaitable[T]]


def run(command: str, bot_dir: Path | None, work: Work[T]) -> T:
    """``work(service, bot_id)`` on the configured database, for the bot in ``bot_dir`` (its id given; else the
    recorded bots, and an empty id); every refusal is one line on stderr and exit code 1, never a traceback."""
    from rejoinder.skills import BotLoadError
    from rejoinder.store import InvalidCursor

    return on_store(
        command,
        lambda store: _with_service(store, bot_dir, work),
        refusals=(BotLoadError, InvalidCursor, OperatorError),
    )


async def _with_service(store: Store, bot_dir: Path | None, work: Work[T]) -> T:
    from rejoinder.service import ConversationService
    from rejoinder.skills import load_bot

    bots = [load_bot(bot_dir)] if bot_dir is not None else await _recorded_bots(store)
    service = ConversationService(store, {bot.id: bot for bot in bots})
    try:
        return await work(service, bots[0].id if bot_dir is not None else "")
    finally:
        await service.aclose()


async def _recorded_bots(store: Store) -> list[Bot]:
    """The bots a server has recorded in the database, each at its current version."""
    from rejoinder.skills.model import BotConfig
    from rejoinder.skills.stored import bot_from_json

    bots = []
    for record in await store.bots.list_bots():
        skills = await store.bots.find_bot_skills(record.id, record.version) or {}
        bots.append(bot_from_json(BotConfig.model_validate(record.config), record.version, skills))
    return bots


def parse_since(value: str | None) -> datetime | None:
    """``--since``: a duration back from now (``24h``, ``7d``) or an ISO 8601 time (UTC unless it says)."""
    from rejoinder.skills.model import parse_duration

    if value is None:
        return None
    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is neither a duration (24h, 7d) nor a time (2026-12-01T09:00:00Z)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def when(moment: datetime | None) -> str:
    """A time as people read it here: UTC, to the second."""
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(moment: datetime | None) -> str | None:
    from rejoinder.store.records import iso_z

    return None if moment is None else iso_z(moment)


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False))


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A Rich table on stdout; text from the database is never read as markup."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", highlight=False)
    for index, column in enumerate(columns):
        if column in _ID_COLUMNS:  # whole, for copying: other columns wrap first
            widest = max((len(row[index]) for row in rows), default=0)
            table.add_column(column, no_wrap=True, min_width=widest)
        else:
            table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console = Console(soft_wrap=False, highlight=False, emoji=False, markup=False)
    if (
        not console.is_terminal
    ):  # a pipe or a file: no terminal's width to fit, so every row stays on one line
        console.width = 240
    console.print(table)
