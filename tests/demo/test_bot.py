"""The demo's bot: found in the wheel or the checkout, allowed on the demo's own address, left unchanged on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rejoinder.demo import bot as demo_bot_module
from rejoinder.demo import demo_bot, demo_origins, example_bot_dir, public_url, self_url
from rejoinder.skills import load_bot

CHECKOUT_BOT = Path(__file__).resolve().parents[2] / "examples" / "shop"


def test_a_source_checkout_uses_the_repositorys_example_bot() -> None:
    assert example_bot_dir() == CHECKOUT_BOT


def test_an_installed_wheel_uses_the_bot_shipped_inside_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "rejoinder"
    shutil.copytree(CHECKOUT_BOT, package / "examples" / "shop")
    monkeypatch.setattr(demo_bot_module.resources, "files", lambda name: package)

    assert example_bot_dir() == package / "examples" / "shop"


def test_the_demo_bot_allows_the_demos_origins_and_signs_its_calls_without_touching_the_files() -> None:
    on_disk = (CHECKOUT_BOT / "rejoinder.yaml").read_text()

    bot = demo_bot(
        origins=demo_origins("127.0.0.1", 8123),
        allow_hosts=["127.0.0.1"],
        signing_secret_env="SHOP_SIGNING_SECRET",
    )

    original = load_bot(CHECKOUT_BOT)
    assert "http://127.0.0.1:8123" in bot.config.allowed_origins
    assert "http://localhost:8123" in bot.config.allowed_origins
    assert set(original.config.allowed_origins) <= set(bot.config.allowed_origins)
    assert bot.config.integrate.signing_secret_env == "SHOP_SIGNING_SECRET"
    assert bot.config.integrate.allow_hosts.count("127.0.0.1") == 1
    assert bot.skills == original.skills and bot.version != original.version
    assert (CHECKOUT_BOT / "rejoinder.yaml").read_text() == on_disk


@pytest.mark.parametrize(
    ("host", "public", "origins"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000", ["http://127.0.0.1:8000", "http://localhost:8000"]),
        ("0.0.0.0", "http://127.0.0.1:8000", ["http://127.0.0.1:8000", "http://localhost:8000"]),
        ("::1", "http://[::1]:8000", ["http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"]),
    ],
)
def test_addresses_a_browser_uses(host: str, public: str, origins: list[str]) -> None:
    assert public_url(host, 8000) == public
    assert demo_origins(host, 8000) == origins


@pytest.mark.parametrize(
    ("bound", "itself"),
    [
        ("127.0.0.1", "http://127.0.0.1:8000"),
        ("0.0.0.0", "http://127.0.0.1:8000"),
        ("::", "http://[::1]:8000"),
    ],
)
def test_the_server_calls_itself_on_a_loopback_address(bound: str, itself: str) -> None:
    assert self_url(bound, 8000) == itself
