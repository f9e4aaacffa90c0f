"""``rejoinder keys create``: a bot's SDK key and secret key, printed once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from rejoinder.cli.typer_app import new_app

if TYPE_CHECKING:
    from rejoinder.server.auth import IssuedKeys

app = new_app(help="SDK and secret keys.")


@app.command("create")
def create(
    bot_dir: Annotated[Path, typer.Argument(help="The bot directory (with rejoinder.yaml).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the keys as one JSON object.")] = False,
) -> None:
    """Create an SDK key and a secret key for a bot in the configured database and print them once."""
    # Imported here so that the other commands start fast.
    import asyncio

    from rejoinder.skills import BotLoadError, load_bot
    from rejoinder.store import InvalidDatabaseURL, StoreUnavailable

    try:
        bot = load_bot(bot_dir)
    except BotLoadError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    try:
        keys = asyncio.run(_create(bot.id))
    except InvalidDatabaseURL as exc:
        _fail(f"REJOINDER_DATABASE_URL: {exc}")
    except StoreUnavailable as exc:
        _fail(f"the database is not available: {exc}")
    if as_json:
        typer.echo(json.dumps({"bot": keys.bot_id, "sdk_key": keys.sdk_key, "secret_key": keys.secret_key}))
        return
    typer.echo(f"Keys for bot {keys.bot_id} (shown only this once; only their hashes are stored):")
    typer.echo(f"  SDK key (web pages, allowed origins only): {keys.sdk_key}")
    typer.echo(f"  secret key (your servers only):            {keys.secret_key}")


async def _create(bot_id: str) -> IssuedKeys:
    from rejoinder.config import get_settings
    from rejoinder.server.auth import create_keys
    from rejoinder.store import Store
    from rejoinder.store.urls import check_url

    url = get_settings().database_url
    check_url(url)
    store = Store.from_url(url)
    try:
        await store.upgrade()
        return await create_keys(store, bot_id, now=datetime.now(UTC))
    finally:
        await store.close()


def _fail(reason: str) -> NoReturn:
    typer.echo(f"rejoinder keys create: {reason}", err=True)
    raise typer.Exit(1)
