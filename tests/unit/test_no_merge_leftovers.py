"""No file of the project keeps the markers a conflicted merge leaves: a reader would meet both versions."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^(<{7}|>{7})( |$)", re.MULTILINE)


def test_no_tracked_text_file_holds_a_conflict_marker() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    leftovers = []
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        if path.suffix in {".png", ".ico", ".woff2", ".lock"} or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        leftovers += [
            f"{name}:{text.count(chr(10), 0, found.start()) + 1}" for found in MARKER.finditer(text)
        ]
    assert not leftovers, leftovers
