"""``rejoinder db upgrade`` and ``rejoinder db purge``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from rejoinder.cli.typer_app import new_app

if TYPE_CHECKING:
    from rejoinder.store import Store
    from rejoinder.store.migrate import Revision

app = new_app(help="Database maintenance.")


@app.command()
def upgrade() -> None:
    """Apply the database migrations that are missing (REJOINDER_DATABASE_URL; safe to run again)."""
    # Imported here so that the other commands start fast.
    import asyncio

    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from rejoinder.config import get_settings
    from rejoinder.store import InvalidDatabaseURL, StoreUnavailable
    from rejoinder.store.migrate import revisions_between
    from rejoinder.store.urls import check_url, shown_url

    url = get_settings().database_url
    shown = shown_url(url)
    try:
        check_url(url)
    except InvalidDatabaseURL as error:
        _fail(f"REJOINDER_DATABASE_URL={shown}: {error}")
    try:
        before, after = asyncio.run(_upgrade(url))
    except (StoreUnavailable, SQLAlchemyError, CommandError) as error:
        _fail(f"{shown}: {getattr(error, 'orig', None) or error}")
    applied = revisions_between(before, after)
    if not applied:
        typer.echo(f"{shown}: already at the newest schema ({after}); nothing to do.")
        return
    done = f"upgraded from {before} to {after}" if before else f"created the schema ({after})"
    typer.echo(f"{shown}: {done}:")
    for revision in applied:
        typer.echo(f"  applied {_describe(revision)}")


async def _upgrade(url: str) -> tuple[str | None, str | None]:
    from rejoinder.store import Store

    store = Store.from_url(url)
    try:
        before = await store.current_revision()
        await store.upgrade()
        return before, await store.current_revision()
    finally:
        await store.close()


@dataclass(frozen=True)
class _Purge:
    bot_id: str
    retention: str
    before: datetime


@app.command()
def purge(
    bot: Annotated[
        list[str] | None,
        typer.Option("--bot", help="Only this bot (repeat for several); default: every bot."),
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Erase conversations idle for longer than this ('90d', '12h'), instead of each bot's retention.",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be erased.")] = False,
) -> None:
    """Erase the conversations idle for longer than their bot's retention (REJOINDER_DATABASE_URL).

    The server does the same in the background every REJOINDER_PURGE_INTERVAL seconds; this runs it now, in short
    batches that let a running server go on writing, with a progress bar per bot.
    """
    import asyncio

    from sqlalchemy.exc import SQLAlchemyError

    from rejoinder.config import get_settings
    from rejoinder.skills.model import parse_duration
    from rejoinder.store import InvalidDatabaseURL, StoreUnavailable
    from rejoinder.store.urls import check_url, shown_url

    url = get_settings().database_url
    try:
        check_url(url)
    except InvalidDatabaseURL as error:
        _fail(f"REJOINDER_DATABASE_URL={shown_url(url)}: {error}", "purge")
    if older_than is not None:
        try:
            parse_duration(older_than)
        except ValueError as error:
            _fail(f"--older-than: {error}", "purge")
    try:
        asyncio.run(_purge(url, bot or [], older_than, dry_run))
    except (StoreUnavailable, SQLAlchemyError) as error:
        _fail(str(getattr(error, "orig", None) or error), "purge")


async def _purge(url: str, only: list[str], older_than: str | None, dry_run: bool) -> None:
    from rejoinder.store import Store

    store = Store.from_url(url)
    try:
        await store.upgrade()
        plans = await _plans(store, only, older_than, datetime.now(UTC))
        for plan in plans:
            await _purge_bot(store, plan, dry_run)
    finally:
        await store.close()


async def _plans(store: Store, only: list[str], older_than: str | None, now: datetime) -> list[_Purge]:
    from rejoinder.retention import cutoff

    recorded = {record.id: record for record in await store.bots.list_bots()}
    unknown = [bot_id for bot_id in only if bot_id not in recorded]
    if unknown:
        known = ", ".join(sorted(recorded)) or "none yet (a server records its bots when it starts)"
        _fail(f"no bot {', '.join(map(repr, unknown))} in this database; its bots: {known}", "purge")
    plans = []
    for bot_id in only or sorted(recorded):
        retention = older_than or recorded[bot_id].config.get("retention")
        if not retention:
            typer.echo(f"{bot_id}: no retention set (rejoinder.yaml 'retention', or --older-than); skipped")
            continue
        plans.append(_Purge(bot_id, retention, cutoff(retention, now)))
    return plans


async def _purge_bot(store: Store, plan: _Purge, dry_run: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rejoinder.retention import purge_bot

    idle = await store.conversations.count_idle(plan.bot_id, plan.before)
    if dry_run or not idle:
        verb = "would erase" if dry_run else "erased"
        typer.echo(f"{plan.bot_id}: {verb} {idle:,} conversations idle for over {plan.retention}")
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(f"{plan.bot_id}: erasing", total=idle)
        erased = await purge_bot(
            store, plan.bot_id, plan.before, progress=lambda count: progress.advance(task, count)
        )
    typer.echo(f"{plan.bot_id}: erased {erased:,} conversations idle for over {plan.retention}")


def _fail(reason: str, command: str = "upgrade") -> NoReturn:
    typer.echo(f"rejoinder db {command}: {reason}", err=True)
    raise typer.Exit(1)


def _describe(revision: Revision) -> str:
    return f"{revision.id} ({revision.title})" if revision.title else revision.id
