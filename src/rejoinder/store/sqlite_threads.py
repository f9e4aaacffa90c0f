"""SQLite off the event loop: each store call is one hand-off to a thread that owns a synchronous connection.

Through an async driver every statement is several trips between the event loop and the driver's thread; here a
whole call (a read, or a whole write transaction) is one trip. Readers share a few threads, each with its own
connection (WAL lets them read while a write is in progress). Every write goes to one writer thread, which takes
all the writes waiting for it and commits them in one transaction, each in its own savepoint: each stays atomic,
and one that fails (a version conflict, a duplicate) is rolled back alone while the others commit. Callers hear
back only after the commit, so an answered write is in the database.

Checkpoints never run inside a commit (``wal_autocheckpoint=0``), nor hold up the writer for long: a checkpoint
thread with a connection of its own copies the WAL into the database (a passive checkpoint, which writers and
readers go on alongside) when the writer has had nothing to write for a moment or has committed many times since
the last one. The WAL starts over from its beginning only at a write that finds it wholly copied, which writes
that never pause would never allow: so once the WAL is long, the writer copies the few frames written during the
thread's last checkpoint itself, between two commits, and the next write starts the WAL over. Only a WAL file past
its size bound (readers kept it from starting over) makes the writer run a full, truncating checkpoint.

An erasing write (``scrub=True``) is followed by a truncating checkpoint too: with ``secure_delete`` on, the freed
space was zeroed in the pages it wrote, the checkpoint copies them over the old ones in the database file, and
emptying the WAL drops the older copies of those pages it still held. Should readers keep it from finishing, the
writer tries again whenever it is idle until it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

from rejoinder.store.connect import WAL_SIZE_LIMIT
from rejoinder.store.errors import StoreUnavailable

log = logging.getLogger("rejoinder.store")

T = TypeVar("T")
Work = Callable[..., Any]

READER_THREADS = 2
MAX_BATCH = 64  # writes committed together at most
IDLE_CHECKPOINT_SECONDS = 0.05  # no write for this long: checkpoint what was written
BUSY_CHECKPOINT_COMMITS = 200  # or this many commits since the last checkpoint
RESTART_FRAMES = 8192  # a WAL this long (32 MB of 4 KB pages) is made to start over under steady writes


class _Job:
    """One call: the work to run on a connection, and the future (on its caller's loop) that gets the answer."""

    __slots__ = ("args", "future", "loop", "queued_at", "scrub", "solo", "work")

    def __init__(
        self,
        work: Work,
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        solo: bool,
        scrub: bool = False,
    ) -> None:
        self.work = work
        self.args = args
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.queued_at = time.monotonic()
        self.solo = solo
        self.scrub = scrub

    def wanted(self) -> bool:
        """False once the caller stopped waiting (cancelled): nothing is run for it then."""
        return not self.future.cancelled()

    def answer(self, result: Any = None, error: BaseException | None = None) -> None:
        # A closed loop (RuntimeError) means nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_settle, self.future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_STOP = object()


class _Generation:
    """One start's threads and what they share: their queues, and the checkpoint thread's wake-up."""

    def __init__(self) -> None:
        self.reads: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self.writes: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self.checkpoint_wanted = threading.Event()
        self.threads: list[threading.Thread] = []
        self.stopping = False


class SQLiteThreads:
    """The threads that run a SQLite store's calls; started on first use, stopped by :meth:`close`."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        busy_timeout: float,
        readers: int = READER_THREADS,
        wal_size_limit: int = WAL_SIZE_LIMIT,
        idle_checkpoint: float = IDLE_CHECKPOINT_SECONDS,
        busy_checkpoint_commits: int = BUSY_CHECKPOINT_COMMITS,
        restart_frames: int = RESTART_FRAMES,
    ) -> None:
        self.engine = engine
        self.busy_timeout = busy_timeout
        self.wal_size_limit = wal_size_limit
        self.idle_checkpoint = idle_checkpoint
        self.busy_checkpoint_commits = busy_checkpoint_commits
        self.restart_frames = restart_frames
        self.commits = 0  # write transactions committed (a batch of writes is one)
        self.checkpoints = 0  # checkpoints run
        self.truncations = 0  # of them, full checkpoints the writer had to run for the WAL's size bound
        self.scrubs = 0  # of them, full checkpoints that emptied the WAL after an erasing write
        self._readers = readers
        self._lock = threading.Lock()
        self._running: _Generation | None = None
        self._finish_wanted = False  # set by the checkpoint thread: the writer should copy the WAL's tail

    async def read(self, work: Callable[..., T], *args: Any) -> T:
        """``work(connection, *args)`` on a reader thread, outside any transaction."""
        return await self._submit(False, work, args, solo=False)

    async def write(self, work: Callable[..., T], *args: Any, solo: bool = False, scrub: bool = False) -> T:
        """``work(connection, *args)`` in a write transaction on the writer thread; answered once committed.

        ``solo`` keeps the work out of batches (a schema migration runs in a transaction of its own). ``scrub``
        (for a write that erases) empties the WAL right after the commit, so no older copy of what it deleted
        stays in the files.
        """
        return await self._submit(True, work, args, solo=solo, scrub=scrub)

    async def _submit(
        self,
        writing: bool,
        work: Work,
        args: tuple[Any, ...],
        *,
        solo: bool,
        scrub: bool = False,
    ) -> Any:
        job = _Job(work, args, asyncio.get_running_loop(), solo, scrub)
        # Under the lock, so that no job lands in a queue behind the stop that close() puts there.
        with self._lock:
            running = self._running or self._start()
            (running.writes if writing else running.reads).put(job)
        return await job.future

    def _start(self) -> _Generation:
        """New threads with queues of their own (under the lock): a call made while close() stops the previous
        threads starts these, and neither set takes the other's work or its stop."""
        running = _Generation()
        running.threads = [
            threading.Thread(
                target=self._read_loop, args=(running,), name=f"rejoinder-sqlite-reader-{n}", daemon=True
            )
            for n in range(self._readers)
        ]
        running.threads.append(
            threading.Thread(
                target=self._write_loop, args=(running,), name="rejoinder-sqlite-writer", daemon=True
            )
        )
        running.threads.append(
            threading.Thread(
                target=self._checkpoint_loop, args=(running,), name="rejoinder-sqlite-checkpoint", daemon=True
            )
        )
        for thread in running.threads:
            thread.start()
        self._running = running
        return running

    def close(self) -> None:
        """Stop the threads once the calls queued before are done, and close their connections (blocks)."""
        with self._lock:
            running, self._running = self._running, None
            if running is None:
                return
            for _ in range(self._readers):
                running.reads.put(_STOP)
            running.writes.put(_STOP)
            running.stopping = True
            running.checkpoint_wanted.set()
        for thread in running.threads:
            thread.join()

    # ------------------------------------------------------------------------------------------ readers

    def _read_loop(self, running: _Generation) -> None:
        connection: sa.Connection | None = None
        while (job := running.reads.get()) is not _STOP:
            assert isinstance(job, _Job)
            if not job.wanted():
                continue
            try:
                if connection is None:
                    connection = self.engine.connect()
                result = job.work(connection, *job.args)
                connection.rollback()  # ends SQLAlchemy's bookkeeping; readers never BEGIN in SQLite
            except Exception as error:
                connection = _reset(connection)
                job.answer(error=error)
            else:
                job.answer(result)
        if connection is not None:
            connection.close()

    # ------------------------------------------------------------------------------------------ the writer

    def _write_loop(self, running: _Generation) -> None:
        writer = _Writer(self, running)
        held: _Job | None = None  # a solo job met while gathering a batch, run next
        while True:
            if held is not None:
                batch, held = [held], None
            else:
                idle = writer.dirty or writer.scrub_wanted
                try:
                    first = running.writes.get(timeout=self.idle_checkpoint if idle else None)
                except queue.Empty:
                    if writer.scrub_wanted:
                        writer.scrub()
                    else:
                        self._request_checkpoint(writer)
                    continue
                if first is _STOP:
                    break
                assert isinstance(first, _Job)
                batch = [first]
                stop = False
                while not first.solo and len(batch) < MAX_BATCH:
                    try:
                        job = running.writes.get_nowait()
                    except queue.Empty:
                        break
                    if job is _STOP:
                        stop = True
                        break
                    assert isinstance(job, _Job)
                    if job.solo:
                        held = job
                        break
                    batch.append(job)
                if stop:
                    if writer.commit(batch):
                        writer.scrub()
                    break
            if writer.commit(batch):
                writer.scrub()  # at once after an erase; a scrub readers held up is retried when idle
            elif self._finish_wanted:
                self._finish_wanted = False
                writer.finish_checkpoint()
            elif writer.dirty >= self.busy_checkpoint_commits:
                self._request_checkpoint(writer)
        writer.close()

    # ------------------------------------------------------------------------------------------ checkpoints

    def _request_checkpoint(self, writer: _Writer) -> None:
        writer.dirty = 0
        writer.running.checkpoint_wanted.set()

    def _checkpoint_loop(self, running: _Generation) -> None:
        connection: sa.Connection | None = None
        while True:
            running.checkpoint_wanted.wait()
            running.checkpoint_wanted.clear()
            if running.stopping:
                break
            try:
                if connection is None:
                    connection = self.engine.connect()
                _busy, wal_frames, _copied = connection.exec_driver_sql(
                    "PRAGMA wal_checkpoint(PASSIVE)"
                ).one()
                connection.rollback()
            except Exception as error:  # retried at the next request
                connection = _reset(connection)
                log.warning("SQLite checkpoint failed: %s", error)
            else:
                self.checkpoints += 1
                if wal_frames >= self.restart_frames:
                    self._finish_wanted = True
        if connection is not None:
            connection.close()


class _Writer:
    """The writer thread's connection: batched commits, and the WAL's size bound."""

    def __init__(self, threads: SQLiteThreads, running: _Generation) -> None:
        self.threads = threads
        self.running = running
        self.connection: sa.Connection | None = None
        self.dirty = 0  # commits since the last checkpoint
        self.wal_path: str | None = None
        self.scrub_wanted = False  # an erasing write committed, and the WAL has not been emptied since

    def commit(self, batch: list[_Job]) -> bool:
        """Run the batch's jobs in one transaction and answer each, after the commit.

        True when one of them was an erasing write that committed (the WAL should be emptied now).
        """
        deadline = time.monotonic() - self.threads.busy_timeout
        jobs: list[_Job] = []
        for job in batch:
            if not job.wanted():
                continue
            if job.queued_at < deadline:
                job.answer(error=StoreUnavailable("database busy: no write slot within the busy timeout"))
            else:
                jobs.append(job)
        if not jobs:
            return False
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            connection = self._connect()
            with connection.begin():
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                if len(jobs) == 1:
                    outcomes.append((jobs[0].work(connection, *jobs[0].args), None))
                else:
                    driver = connection.connection.driver_connection
                    for job in jobs:
                        outcomes.append(_in_savepoint(connection, driver, job))
        except Exception as error:
            self.connection = _reset(self.connection)
            # Nothing was committed: every job of the batch fails, each with its own error if it had one.
            failures = [own or error for _, own in outcomes]
            failures += [error] * (len(jobs) - len(outcomes))
            _answer_all(jobs, [(None, failure) for failure in failures])
            return False
        self.dirty += 1
        self.threads.commits += 1
        erased = any(job.scrub and error is None for job, (_, error) in zip(jobs, outcomes, strict=True))
        self.scrub_wanted = self.scrub_wanted or erased
        _answer_all(jobs, outcomes)
        self._bound_wal()
        return erased

    def finish_checkpoint(self) -> None:
        """Copy what the WAL holds beyond the checkpoint thread's last checkpoint (no writer runs meanwhile).

        The WAL is then wholly in the database, and the next commit writes it from its start again. Passive: it
        never waits for readers; one reading an older snapshot only leaves the start-over to the next time.
        """
        self._checkpoint("PASSIVE")

    def truncate_wal(self) -> None:
        """Copy the whole WAL into the database, waiting for readers, and empty the WAL file."""
        if self._checkpoint("TRUNCATE"):
            self.threads.truncations += 1

    def scrub(self) -> None:
        """After an erasing write: copy the whole WAL into the database and empty it (tried again when idle)."""
        if self._checkpoint("TRUNCATE", complete=True):
            self.scrub_wanted = False
            self.threads.scrubs += 1

    def _checkpoint(self, mode: str, *, complete: bool = False) -> bool:
        """Run a checkpoint; with ``complete``, it counts only if readers let it copy the whole WAL."""
        if self.connection is None:
            return False
        try:
            busy, _frames, _copied = self.connection.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})").one()
            self.connection.rollback()
        except Exception as error:  # retried later
            self.connection = _reset(self.connection)
            log.warning("SQLite checkpoint (%s) failed: %s", mode, error)
            return False
        self.threads.checkpoints += 1
        self.dirty = 0
        return not (complete and busy)

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _connect(self) -> sa.Connection:
        if self.connection is None:
            self.connection = self.threads.engine.connect()
            files = self.connection.exec_driver_sql("PRAGMA database_list").all()
            self.connection.rollback()
            main = next((file for _, name, file in files if name == "main"), "")
            self.wal_path = f"{main}-wal" if main else None
        return self.connection

    def _bound_wal(self) -> None:
        """A WAL past its size bound (it could not start over since the last pause) is checkpointed whole."""
        if self.wal_path is None:
            return
        try:
            size = os.path.getsize(self.wal_path)
        except OSError:
            return
        if size > self.threads.wal_size_limit:
            self.truncate_wal()


def _in_savepoint(connection: sa.Connection, driver: Any, job: _Job) -> tuple[Any, BaseException | None]:
    """One job of a batch: its changes are kept only if it succeeds; its own failure is its alone.

    The savepoint is sent straight to the driver: SQLAlchemy would compile its SAVEPOINT anew for every turn.
    """
    driver.execute("SAVEPOINT turn")
    try:
        result = job.work(connection, *job.args)
    except Exception as error:
        driver.execute("ROLLBACK TO turn")
        driver.execute("RELEASE turn")
        if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
            raise
        return None, error
    driver.execute("RELEASE turn")
    return result, None


def _answer_all(jobs: list[_Job], outcomes: list[tuple[Any, BaseException | None]]) -> None:
    """Answer jobs with one wake-up per event loop instead of one per job."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
    for job, (result, error) in zip(jobs, outcomes, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, result, error))
    for loop, answers in by_loop.items():
        # A closed loop (RuntimeError) means nobody is listening any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle_all, answers)


def _settle_all(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in answers:
        _settle(future, result, error)


def _reset(connection: sa.Connection | None) -> sa.Connection | None:
    """After an error: the connection, back outside any transaction, or None when it must be opened again."""
    if connection is None:
        return None
    with contextlib.suppress(Exception):
        connection.rollback()
        if not connection.invalidated:
            return connection
    with contextlib.suppress(Exception):
        connection.close()
    return None
