"""Operating the server: health and readiness probes, Prometheus metrics, one structured log line per request.

Metrics live in a registry of their own per app (several apps in one process never collide). The counters are
fed where the work happens: the client API times turns and resumes, :class:`MeteredIntegrationClient` times
Integrate calls, and :class:`AccessLog` times every request. Log lines carry paths without query strings, so a
credential passed as a query parameter (the WebSocket's ``?session=``) never reaches a log; uvicorn's own
WebSocket lines lose their query too, and whatever else slips through is redacted, however it is encoded.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import os
import queue
import re
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rejoinder.credentials import SECRET_IN_TEXT as _SECRET
from rejoinder.engine import HttpCall, HttpResponse
from rejoinder.integrations import IntegratePolicy, IntegrationClient
from rejoinder.server import state
from rejoinder.server.errors import problem_responses, unavailable, write_failed

access_log = logging.getLogger("rejoinder.access")

# Set by `rejoinder serve --workers N` for its workers: prometheus-client then keeps every metric in files there,
# and any worker's /metrics answers for all of them.
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The server's Prometheus metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        r = self.registry
        self.turns = Counter(
            "rejoinder_turns",
            "Conversation turns run, by bot and kind (start or message).",
            ["bot", "kind"],
            registry=r,
        )
        self.turn_seconds = Histogram(
            "rejoinder_turn_duration_seconds",
            "Time to run and save one turn.",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.resumes = Counter(
            "rejoinder_resumes",
            "Resume attempts by bot and outcome (ok or the problem type).",
            ["bot", "outcome"],
            registry=r,
        )
        self.resume_seconds = Histogram(
            "rejoinder_resume_duration_seconds",
            "Time to verify a token and load its conversation.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.integrate_calls = Counter(
            "rejoinder_integrate_calls",
            "Integrate calls by outcome: ok (2xx), http_error (other status) or error (no usable answer).",
            ["outcome"],
            registry=r,
        )
        self.integrate_seconds = Histogram(
            "rejoinder_integrate_duration_seconds",
            "Integrate call time, retries included.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Histogram(
            "rejoinder_http_request_duration_seconds",
            "HTTP request time by method, route template and status.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, remembered: label sets are few, and each labels() call takes a lock."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    @contextmanager
    def turn(self, bot_id: str, kind: str) -> Iterator[None]:
        """Count and time a turn; a turn that raises is timed but not counted."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.child(self.turn_seconds, kind).observe(time.perf_counter() - started)
        self.child(self.turns, bot_id, kind).inc()

    def resume(self, bot_id: str, outcome: str, seconds: float) -> None:
        self.child(self.resumes, bot_id, outcome).inc()
        self.resume_seconds.observe(seconds)

    def render(self) -> bytes:
        """The text format: this process's metrics, or every worker's when they share a multiprocess directory."""
        if MULTIPROCESS_DIR_ENV in os.environ:
            gathered = CollectorRegistry()
            multiprocess.MultiProcessCollector(gathered)
            return generate_latest(gathered)
        return generate_latest(self.registry)


class MeteredIntegrationClient(IntegrationClient):
    """The Integrate client, counting and timing every call by outcome."""

    def __init__(self, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics

    async def perform(self, call: HttpCall, policy: IntegratePolicy) -> HttpResponse:
        response = await super().perform(call, policy)
        outcome = "ok" if response.ok else "error" if response.error is not None else "http_error"
        self.metrics.child(self.metrics.integrate_calls, outcome).inc()
        self.metrics.integrate_seconds.observe(response.elapsed_ms / 1000)
        return response


# ------------------------------------------------------------------------------------------------ routes

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable and takes writes", responses=problem_responses(503))
async def readyz(request: Request) -> dict[str, str]:
    store = state.store(request)
    if not await store.ping():
        raise unavailable()
    failure = store.recent_write_failure()
    if failure is not None:
        raise write_failed(failure.error)
    return {"status": "ready"}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    registry = state.metrics(request)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)


# ------------------------------------------------------------------------------------------------ request log


class AccessLog:
    """ASGI middleware: one log line and one latency observation per HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.child(self.metrics.requests, scope["method"], route, str(status)).observe(seconds)
            client = scope.get("client")
            access_log.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "client": client[0] if client else None,
                },
            )


# ------------------------------------------------------------------------------------------------ log format

# Standard record attributes, and uvicorn's ANSI-coloured duplicate of its message.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}


# A run of characters that may spell a credential once decoded: percent escapes (%5F, or %255F when encoded
# twice) and backslash escapes (\u005f, as a JSON text writes it, its backslash doubled when JSON is nested).
_ESCAPED_RUN = re.compile(r"(?:[A-Za-z0-9_.~-]|%[0-9A-Fa-f]{2}|\\+u[0-9A-Fa-f]{4})+")
_BACKSLASH_ESCAPE = re.compile(r"\\+u([0-9A-Fa-f]{4})")
_DECODE_ROUNDS = 4


def redact(text: str) -> str:
    """``text`` with every token, session and key replaced by its prefix, also when escaped.

    An escaped run that decodes to a credential is replaced by its decoded form, redacted (and percent-encoded
    again where it holds characters other than those of a credential).
    """
    text = _SECRET.sub(r"\1_[redacted]", text)
    if "%" not in text and "\\" not in text:
        return text
    return _ESCAPED_RUN.sub(_redact_escaped, text)


def _redact_escaped(match: re.Match[str]) -> str:
    run = match.group()
    if "%" not in run and "\\" not in run:
        return run
    decoded = run
    for _ in range(_DECODE_ROUNDS):
        unescaped = urllib.parse.unquote(_BACKSLASH_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), decoded))
        if unescaped == decoded:
            break
        decoded = unescaped
    if decoded == run or not _SECRET.search(decoded):
        return run
    return urllib.parse.quote(_SECRET.sub(r"\1_[redacted]", decoded), safe="_.~-[]")


class QuerylessWebSocketLines(logging.Filter):
    """Drop the query from the path of uvicorn's WebSocket lines: it may carry ``?session=``."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(record.msg, str) and '"WebSocket %s"' in record.msg and isinstance(args, tuple):
            record.args = tuple(
                arg.split("?", 1)[0] if isinstance(arg, str) and arg.startswith("/") else arg for arg in args
            )
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields; secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update((key, value) for key, value in vars(record).items() if key not in _RECORD_FIELDS)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(data, default=str))


def queued_stderr() -> logging.Handler:
    """A handler that hands records to a thread which writes them to stderr.

    Logging is called from the event loop; a slow or full stderr (a pipe nobody reads fast enough) must stall
    that thread, not every conversation. Records are formatted when queued, so the line is what it was then.
    """
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    writer = logging.StreamHandler(sys.stderr)
    listener = logging.handlers.QueueListener(records, writer)
    listener.start()
    stopped = False

    def write_out() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            listener.stop()  # writes out what is queued

    atexit.register(write_out)
    _write_out_before_dying_of(write_out, signal.SIGTERM, signal.SIGINT)
    return logging.handlers.QueueHandler(records)


def _write_out_before_dying_of(write_out: Callable[[], None], *signals: signal.Signals) -> None:
    """Write out the queued lines before a signal's default action ends the process.

    uvicorn handles SIGTERM and SIGINT while it runs, then restores the handlers it found and raises the signal
    again; a default action would kill the process with its last lines (the shutdown's) still queued.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for number in signals:
        previous = signal.getsignal(number)
        if previous not in (signal.SIG_DFL, signal.default_int_handler):
            continue  # someone else's handler: leave it

        def write_out_then_die(received: int, _frame: object, previous: Any = previous) -> None:
            write_out()
            signal.signal(received, previous)
            signal.raise_signal(received)

        signal.signal(number, write_out_then_die)


def logging_config(level: str = "info") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` (also uvicorn's ``log_config``): JSON lines on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "filters": {"queryless_websocket_lines": {"()": f"{__name__}.QuerylessWebSocketLines"}},
        "handlers": {"stderr": {"()": f"{__name__}.queued_stderr", "formatter": "json"}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True, "filters": ["queryless_websocket_lines"]},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }
