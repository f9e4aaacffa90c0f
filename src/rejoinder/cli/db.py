"""``rejoinder db upgrade``."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import typer

from rejoinder.cli.typer_app import new_app

if TYPE_CHECKING:
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


def _fail(reason: str) -> NoReturn:
    typer.echo(f"rejoinder db upgrade: {reason}", err=True)
    raise typer.Exit(1)


def _describe(revision: Revision) -> str:
    return f"{revision.id} ({revision.title})" if revision.title else revision.id
