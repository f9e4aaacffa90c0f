"""What can go wrong in the store, and which database errors mean "try again later"."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import exc as sa_exc


class StoreError(Exception):
    """Base class of the store's own errors."""


class VersionConflict(StoreError):
    """The conversation changed since it was read (or, on create, it already exists)."""


class DuplicateClientMessage(StoreError):
    """A message with this (conversation, client_message_id) is already stored."""


class StoreUnavailable(StoreError):
    """The database is unreachable or stayed locked beyond the busy timeout."""


class StorageFull(StoreUnavailable):
    """The database's disk (or its size limit) is full: nothing can be written until space is freed."""


class InvalidCursor(StoreError, ValueError):
    """A pagination cursor that this store did not hand out."""


# SQLite result codes (by name, extended codes included) that mean the database cannot serve us right now.
_SQLITE_UNAVAILABLE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_FULL")
# PostgreSQL SQLSTATE classes/codes: connection exception, insufficient resources, server shutting down or starting.
_PG_UNAVAILABLE = ("08", "53", "57P01", "57P02", "57P03")
_PG_DISK_FULL = "53100"


def is_unavailable(error: BaseException) -> bool:
    """True when ``error`` says the database is down, unreachable, overloaded or locked (a 503, not a bug)."""
    if isinstance(error, OSError | TimeoutError | sa_exc.TimeoutError):
        return True
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    orig = error.orig
    sqlite_name = getattr(orig, "sqlite_errorname", None)
    if isinstance(sqlite_name, str):
        return sqlite_name.startswith(_SQLITE_UNAVAILABLE)
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_PG_UNAVAILABLE)
    locked = "locked" in str(error).lower()
    return locked and isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)


def is_storage_full(error: BaseException) -> bool:
    """True when ``error`` says the database has no room left to write (SQLITE_FULL, disk_full, ENOSPC)."""
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    orig = error.orig if isinstance(error, sa_exc.DBAPIError) else None
    if orig is None:
        return False
    sqlite_name = getattr(orig, "sqlite_errorname", None)
    if isinstance(sqlite_name, str):
        return sqlite_name.startswith("SQLITE_FULL")
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return sqlstate == _PG_DISK_FULL


@asynccontextmanager
async def unavailable_as_store_error() -> AsyncIterator[None]:
    """Turn database errors that mean "unavailable" into :class:`StoreUnavailable`; let everything else through."""
    try:
        yield
    except StoreError:
        raise
    except Exception as error:
        if is_unavailable(error):
            # The driver's own message, never SQLAlchemy's (which would quote the statement and its parameters);
            # its class name when it has none (a timeout).
            reason = error.orig if isinstance(error, sa_exc.DBAPIError) else error
            if is_storage_full(error):
                raise StorageFull(f"database storage full: {reason}") from error
            raise StoreUnavailable(f"database unavailable: {str(reason) or type(reason).__name__}") from error
        raise
