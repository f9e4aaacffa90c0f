"""Fixtures of the app in this process, on a temporary SQLite database with the example shop bot."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from rejoinder.skills import Bot, load_bot
from tests.helpers.admin_api import Api, running_admin_api, write_admin_bots
from tests.helpers.app import Launch, Server, running
from tests.helpers.bots import EXAMPLE_BOT


@pytest.fixture
def launch() -> Launch:
    """``launch(database, bots, keys=…, resume_guard=…, client_ip=…, **settings)``: run another app as a context
    manager."""
    return running


@pytest.fixture(scope="session")
def shop_bot() -> Bot:
    return load_bot(EXAMPLE_BOT)


@pytest.fixture(scope="session")
def other_bot(shop_bot: Bot) -> Bot:
    """The shop's skills under another bot id, with no allowed origins."""
    config = shop_bot.config.model_copy(update={"id": "other", "allowed_origins": []})
    return Bot(config=config, skills=shop_bot.skills, version=shop_bot.version)


@pytest.fixture
async def server(tmp_path: Path, shop_bot: Bot, other_bot: Bot) -> AsyncIterator[Server]:
    async with running(tmp_path / "rejoinder.db", {"shop": shop_bot, "other": other_bot}) as started:
        yield started


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB file system of its own (tmpfs), unmounted whatever happens."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def bots_root(tmp_path: Path) -> Path:
    """The bots "chat" and "other" written under a temporary directory."""
    return write_admin_bots(tmp_path / "bots")


@pytest.fixture
async def api(bots_root: Path, tmp_path: Path) -> AsyncIterator[Api]:
    """The admin API's app serving ``bots_root`` on a fresh SQLite file."""
    async with running_admin_api(bots_root, tmp_path / "rejoinder.db") as started:
        yield started
