"""``rejoinder --version``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rejoinder import __version__
from tests.helpers.processes import COMMAND_TIMEOUT

REJOINDER = str(Path(sys.executable).with_name("rejoinder"))


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_prints_the_version_and_exits_0(flag: str) -> None:
    result = subprocess.run([REJOINDER, flag], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"rejoinder {__version__}\n"
