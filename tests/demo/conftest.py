"""The demo app in this process (lifespan included), driven through httpx over ASGI like a browser on the shop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.demo_app import Demo, running_demo


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    async with running_demo(tmp_path) as started:
        yield started
