"""What the console's record pages (conversations, tokens, audit) share: which bot a page is about, the query
values they read (a list's filters as a :class:`Selection`), the links of a keyset page, and the service's refusals
answered as HTML pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlencode

from fastapi import Request

from rejoinder.server.console.session import ConsoleRefused
from rejoinder.service.errors import ConversationNotFound, ServiceError, TokenNotFound
from rejoinder.store import InvalidCursor
from rejoinder.store.pagination import Page
from rejoinder.store.records import iso_z

# The longest value a console filter takes (ids, names, search text are all far shorter).
MAX_FILTER_CHARS = 200

F = TypeVar("F")
F_contra = TypeVar("F_contra", contravariant=True)
T = TypeVar("T")


class ListRead(Protocol[F_contra, T]):
    """A service's read of one page of a bot's list (conversations, tokens, audit events)."""

    def __call__(
        self, bot_id: str, filters: F_contra, *, limit: int, cursor: str | None
    ) -> Awaitable[Page[T]]: ...


@dataclass(frozen=True)
class Selection(Generic[F]):
    """A list's filters, read from the query string once for its page (and export): ``shown`` as the form shows
    them again and its links keep them, ``filters`` as the service takes them (None when the server runs no
    bot, ``bot`` then empty)."""

    shown: dict[str, str]
    filters: F | None

    @property
    def bot(self) -> str:
        return self.shown["bot"]

    async def page(self, read: ListRead[F, T], limit: int, cursor: str | None) -> Page[T] | None:
        """The page ``read`` gives at ``cursor`` (a page link's); None when the server runs no bot."""
        if self.filters is None:
            return None
        async with refusals_as_pages():
            return await read(self.bot, self.filters, limit=limit, cursor=text_filter(cursor, "page"))


def served_bots(request: Request) -> list[str]:
    """The ids of the bots this server runs, sorted."""
    return sorted(request.app.state.bots)


def chosen_bot(request: Request, bot: str | None) -> str | None:
    """The bot a page shows: ``bot`` when this server runs it (else 404), the first one by default; None when the
    server runs none."""
    bots = served_bots(request)
    if bot:
        if bot not in bots:
            raise ConsoleRefused(404, "No such bot", f"This server runs no bot {bot[:100]!r}.")
        return bot
    return bots[0] if bots else None


def text_filter(value: str | None, what: str) -> str | None:
    """A filter's value, trimmed; None when empty; a clear 400 when longer than any real value."""
    value = (value or "").strip()
    if len(value) > MAX_FILTER_CHARS:
        raise ConsoleRefused(
            400, "Filter too long", f"The {what} filter is at most {MAX_FILTER_CHARS} characters."
        )
    return value or None


def choice_filter(value: str | None, choices: tuple[str, ...], what: str) -> str | None:
    value = text_filter(value, what)
    if value is not None and value not in choices:
        raise ConsoleRefused(400, "Unknown filter", f"The {what} filter is one of: {', '.join(choices)}.")
    return value


def time_filter(value: str | None, what: str) -> datetime | None:
    """A date or date and time (ISO 8601, as the browser's date fields send it); UTC unless it names a zone."""
    value = text_filter(value, what)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConsoleRefused(
            400, "Unreadable time", f"The {what} filter is a date like 2026-12-01 or 2026-12-01T09:30."
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def filtered_link(path: str, filters: Mapping[str, Any]) -> str:
    """``path`` with the filters that have a value."""
    kept = {name: value for name, value in filters.items() if value not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


def page_link(path: str, filters: Mapping[str, Any], cursor: str | None) -> str | None:
    """The URL of a neighbouring page (None when there is none), keeping the filters."""
    if cursor is None:
        return None
    return filtered_link(path, {**filters, "cursor": cursor})


def page_links(path: str, filters: Mapping[str, Any], page: Page[Any] | None) -> dict[str, str | None]:
    """The links to the pages after and before ``page`` (none without a page), keeping the filters."""
    if page is None:
        return {"next": None, "previous": None}
    return {
        "next": page_link(path, filters, page.next_cursor),
        "previous": page_link(path, filters, page.previous_cursor),
    }


@dataclass(frozen=True)
class ShownTime:
    """A time as a page shows it (UTC, as the pages' headings say): ``iso`` for ``<time datetime>``, ``text``
    short for a person, ``full`` for its title."""

    iso: str
    text: str
    full: str


def shown_time(moment: datetime | None) -> ShownTime | None:
    if moment is None:
        return None
    return shown_iso(iso_z(moment))


def shown_iso(iso: str) -> ShownTime:
    """A time as the API writes it (``2026-12-03T16:20:14.000Z``) as a page shows it: one formatting for all three."""
    return ShownTime(iso=iso, text=f"{iso[:10]} {iso[11:16]}", full=f"{iso[:10]} {iso[11:19]} UTC")


@asynccontextmanager
async def refusals_as_pages() -> AsyncIterator[None]:
    """The service's refusals (a missing conversation or token, a bad cursor or value) as HTML error pages."""
    try:
        yield
    except ConversationNotFound as error:
        raise ConsoleRefused(404, "Conversation not found", f"{error} It may have been erased.") from None
    except TokenNotFound as error:
        raise ConsoleRefused(404, "Token not found", str(error)) from None
    except InvalidCursor:
        raise ConsoleRefused(
            400, "Unknown page", "This page link is not valid any more. Start again from the first page."
        ) from None
    except ServiceError as error:
        raise ConsoleRefused(400, "Not done", str(error)) from None
