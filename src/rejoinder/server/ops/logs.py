"""The log format: one JSON object per line on stderr, with every credential redacted.

uvicorn's own WebSocket lines lose their query (it may carry ``?session=``), and whatever else slips through is
redacted, however it is encoded. Lines are written by a thread of their own, so a slow stderr never stalls the
event loop.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import re
import signal
import sys
import threading
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

# Standard record attributes, and uvicorn's ANSI-coloured duplicate of its message.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}


# Credentials that must never reach a log line, whoever logs them.
_SECRET = re.compile(r"(?<![A-Za-z0-9])(rjt|ses|sk|pk)_[A-Za-z0-9_-]{16,}")
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
