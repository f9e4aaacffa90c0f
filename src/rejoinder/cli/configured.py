"""Commands that work on the configured database: the store opened and migrated for one piece of work, then
closed, and every refusal one line on stderr with exit code 1, never a traceback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from rejoinder.store import Store

T = TypeVar("T")


def fail(command: str, reason: str) -> NoReturn:
    """``rejoinder COMMAND: REASON`` on stderr, exit code 1."""
    typer.echo(f"rejoinder {command}: {reason}", err=True)
    raise typer.Exit(1)


def on_store(
    command: str, work: Callable[[Store], Awaitable[T]], *, refusals: tuple[type[Exception], ...] = ()
) -> T:
    """``work(store)`` on ``REJOINDER_DATABASE_URL``; a bad URL, an unreachable database, a refusal of the service
    and any of ``refusals`` end the command with :func:`fail`."""
    # Imported here so that every command's --help starts fast.
    import asyncio

    from rejoinder.service.errors import ServiceError
    from rejoinder.store import InvalidDatabaseURL, StoreUnavailable

    refused: tuple[type[Exception], ...] = (ServiceError, *refusals)
    try:
        return asyncio.run(_on_store(work))
    except InvalidDatabaseURL as exc:
        fail(command, f"REJOINDER_DATABASE_URL: {exc}")
    except StoreUnavailable as exc:
        fail(command, f"the database is not available: {exc}")
    except refused as exc:
        fail(command, str(exc))


async def _on_store(work: Callable[[Store], Awaitable[T]]) -> T:
    from rejoinder.config import get_settings
    from rejoinder.store import Store
    from rejoinder.store.urls import check_url

    url = get_settings().database_url
    check_url(url)
    store = Store.from_url(url)
    try:
        await store.upgrade()
        return await work(store)
    finally:
        await store.close()
