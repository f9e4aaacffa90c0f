"""A file system that runs out of space."""

from __future__ import annotations

import os
from pathlib import Path


def fill_disk(disk: Path) -> Path:
    """Fill ``disk`` to its last byte with one file, and return it."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(descriptor, b"\0" * 4096):
            pass
    except OSError:
        pass  # full
    finally:
        os.close(descriptor)
    return filler
