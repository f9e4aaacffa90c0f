"""A real ``rejoinder demo`` process on a free loopback port: its printed URL and keys, its log, and its stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.processes import READY_TIMEOUT, REJOINDER, end_process, free_port, wait_until_up

START_TIMEOUT = READY_TIMEOUT


@dataclass
class DemoProcess:
    """``rejoinder demo --port <port>``; ``output`` is what it printed, ``log`` the file its stderr goes to."""

    port: int
    log: Path
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def printed(self) -> str:
        return "".join(self.output)

    def printed_value(self, pattern: str) -> str:
        found = re.search(pattern, self.printed)
        assert found is not None, f"{pattern!r} not in the demo's output:\n{self.printed}"
        return found.group(0)

    @property
    def sdk_key(self) -> str:
        return self.printed_value(r"pk_[A-Za-z0-9_-]+")

    @property
    def secret_key(self) -> str:
        return self.printed_value(r"sk_[A-Za-z0-9_-]+")

    def stop(self) -> int:
        """SIGINT (Ctrl-C), as a person stops it; returns the exit code."""
        end_process(self.process, signal.SIGINT)
        if self.reader is not None:
            self.reader.join(timeout=5)  # the last lines it printed
        return self.process.returncode


def start_demo(directory: Path, *, log_level: str | None = None) -> DemoProcess:
    """Start the demo and wait until it has printed its guide and answers; fails with its output otherwise."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("REJOINDER_", "SHOP_"))}
    if log_level is not None:
        env["REJOINDER_LOG_LEVEL"] = log_level
    env["TMPDIR"] = str(directory)  # the demo's fresh database goes here, so that a test can see it go
    log = directory / "demo.log"
    port = free_port()
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [REJOINDER, "demo", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    demo = DemoProcess(port=port, log=log, process=process)
    guide_printed = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            demo.output.append(line)
            if line.startswith("Press Ctrl-C"):
                guide_printed.set()

    demo.reader = threading.Thread(target=read, daemon=True)
    demo.reader.start()
    started = time.monotonic()
    try:
        if not guide_printed.wait(START_TIMEOUT):
            raise AssertionError(f"the demo did not start: {demo.printed}\n{log.read_text()}")
        wait_until_up(demo.base, process, timeout=max(START_TIMEOUT - (time.monotonic() - started), 1))
    except BaseException:
        demo.stop()
        raise
    return demo
