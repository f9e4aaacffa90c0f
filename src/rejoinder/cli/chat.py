"""``rejoinder chat``: talk to a bot in the terminal, persisted like any other conversation.

Works interactively and with a pipe: each line on stdin is one customer message. At a question with choices, the
customer may type a choice's label or value, or its number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer


def chat(
    bot_dir: Annotated[Path, typer.Argument(help="The bot directory (with rejoinder.yaml).")],
    event: Annotated[
        str | None, typer.Option("--event", help="Start with the skill this event triggers.")
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Resume the conversation this conversation token belongs to."),
    ] = None,
) -> None:
    """Talk to a bot in the terminal (each line of a piped stdin is one customer message)."""
    # Imported here so that `rejoinder --help` and the other commands start fast.
    import asyncio

    from rejoinder.cli.bot_env import require_env
    from rejoinder.cli.chat_session import run_chat
    from rejoinder.config import get_settings
    from rejoinder.skills import BotLoadError, load_bot
    from rejoinder.store import InvalidDatabaseURL, StoreUnavailable
    from rejoinder.store.urls import check_url

    if event and resume:
        _fail("use --event or --resume, not both")
    try:
        bot = load_bot(bot_dir)
    except BotLoadError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    url = get_settings().database_url
    try:
        check_url(url)
    except InvalidDatabaseURL as exc:
        _fail(f"REJOINDER_DATABASE_URL: {exc}")
    require_env("chat", [(bot_dir, bot)])
    try:
        code = asyncio.run(run_chat(bot, url, event=event, resume=resume))
    except StoreUnavailable as exc:
        _fail(f"the database is not available: {exc}")
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


def _fail(reason: str) -> NoReturn:
    typer.secho(f"rejoinder chat: {reason}", err=True, fg="red")
    raise typer.Exit(1)
