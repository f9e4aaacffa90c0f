"""The server's log: JSON lines on stderr, written by a thread so that a slow stderr never stalls the event loop."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import textwrap

import pytest

from rejoinder.server.ops.logs import redact
from tests.helpers.processes import COMMAND_TIMEOUT, ending

SCRIPT = textwrap.dedent(
    """
    import logging.config, sys, time
    from rejoinder.server.ops.logs import logging_config

    logging.config.dictConfig(logging_config("info"))
    log = logging.getLogger("rejoinder.test")
    started = time.perf_counter()
    for number in range(300):
        log.info("line %d %s", number, "x" * 1000)  # 300 KB: far more than a pipe holds
    print(f"{time.perf_counter() - started:.3f}", flush=True)
    """
)


def test_log_lines_are_json_and_a_full_stderr_does_not_hold_up_the_caller() -> None:
    started = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with ending(started, signal.SIGKILL, grace=0) as process:
        # Read stdout first: stderr stays unread (and full) while the logging calls are made.
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 20)
        if not ready:
            raise AssertionError("the logging calls were held up by the full stderr")
        seconds = float(process.stdout.readline())
        _, stderr = process.communicate(timeout=60)

    assert process.returncode == 0
    assert seconds < 5.0
    lines = [json.loads(line) for line in stderr.splitlines()]
    assert len(lines) == 300  # nothing queued is lost at exit
    assert lines[0]["logger"] == "rejoinder.test"
    assert lines[-1]["message"].startswith("line 299 xxx")


DYING_SCRIPT = textwrap.dedent(
    """
    import logging, logging.config, signal
    from rejoinder.server.ops.logs import logging_config

    logging.config.dictConfig(logging_config("info"))
    # What uvicorn does: handle the signal while serving, restore the handler it found, raise the signal again.
    found = signal.signal(signal.SIGTERM, lambda *_: None)
    for number in range(200):
        logging.getLogger("rejoinder.test").info("shutting down, step %d", number)
    signal.signal(signal.SIGTERM, found)
    signal.raise_signal(signal.SIGTERM)
    """
)


def test_the_last_lines_are_written_when_a_signal_ends_the_process() -> None:
    finished = subprocess.run(
        [sys.executable, "-c", DYING_SCRIPT], capture_output=True, text=True, timeout=60
    )

    assert finished.returncode == -signal.SIGTERM
    lines = [json.loads(line)["message"] for line in finished.stderr.splitlines()]
    assert lines[-1] == "shutting down, step 199"
    assert len(lines) == 200


# ------------------------------------------------------------------------------------------------ redaction

SESSION = "ses_Q3bT0x9Lk2mPq8Rz4VwY1aBcDeFgHiJk"


@pytest.mark.parametrize(
    "logged",
    [
        f"/v1/conversations/c1/stream?session={SESSION}",
        "?session=" + SESSION.replace("_", "%5F"),
        "?session=" + SESSION.replace("_", "%5f"),
        "?session=" + SESSION.replace("_", "%255F"),  # encoded twice
        "?session%3D" + SESSION.replace("_", "%5F"),
        "?session=" + "".join(f"%{ord(char):02X}" for char in SESSION),  # every character escaped
        '{"session": "' + SESSION.replace("_", "\\u005f") + '"}',  # a JSON text
        '{"session": "' + SESSION.replace("_", "\\\\u005f") + '"}',  # that JSON text inside another
    ],
)
def test_a_secret_is_redacted_however_it_is_encoded(logged: str) -> None:
    redacted = redact(logged)
    assert "Q3bT0x9Lk2mPq8Rz4VwY1aBcDeFgHiJk" not in redacted
    assert "ses_[redacted]" in redacted


@pytest.mark.parametrize(
    "logged",
    ["progress 100%25 done", "C:\\users\\task_manager_0123456789abcdef", "/v1/skills/pk%5Fshort", "%zz"],
)
def test_text_without_a_secret_is_left_as_it_is(logged: str) -> None:
    assert redact(logged) == logged


UVICORN_SCRIPT = textwrap.dedent(
    """
    import logging.config
    from rejoinder.server.ops.logs import logging_config

    logging.config.dictConfig(logging_config("info"))
    # uvicorn's own line for an accepted WebSocket, with the path as the client sent it.
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" [accepted]', "127.0.0.1:50000", "/v1/conversations/c1/stream?session=SECRET&after=2"
    )
    """
)


def test_uvicorn_websocket_lines_are_logged_without_their_query() -> None:
    encoded = SESSION.replace("_", "%5F")
    finished = subprocess.run(
        [sys.executable, "-c", UVICORN_SCRIPT.replace("SECRET", encoded)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert finished.returncode == 0, finished.stderr
    line = json.loads(finished.stderr.splitlines()[-1])
    assert line["message"] == '127.0.0.1:50000 - "WebSocket /v1/conversations/c1/stream" [accepted]'
    assert "Q3bT0x9Lk2mPq8Rz4VwY1aBcDeFgHiJk" not in finished.stderr
