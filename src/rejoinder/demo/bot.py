"""The demo's bot: the example shop bot (``examples/shop``), adjusted in memory for the address it is served at."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from rejoinder.skills import Bot, load_bot
from rejoinder.skills.loader import bot_version

BOT_FILE = "rejoinder.yaml"


class ExampleBotMissing(LookupError):
    """Neither the installed package nor the source checkout holds the example bot."""


def example_bot_dir() -> Path:
    """Where the example shop bot lives: inside the installed wheel, else in the source checkout.

    The wheel carries it as package data (``rejoinder/examples/shop``); a source checkout has it at the
    repository's ``examples/shop``, three levels above this package.
    """
    packaged = resources.files("rejoinder").joinpath("examples", "shop")
    candidates = [Path(str(packaged)), Path(__file__).resolve().parents[3] / "examples" / "shop"]
    for candidate in candidates:
        if (candidate / BOT_FILE).is_file():
            return candidate
    raise ExampleBotMissing(
        "the example bot is missing: looked in " + " and ".join(str(path) for path in candidates)
    )


def demo_bot(
    *, origins: list[str], allow_hosts: list[str], signing_secret_env: str, directory: Path | None = None
) -> Bot:
    """The example bot, allowed on ``origins``, calling its shop backend on ``allow_hosts`` with signed calls.

    The files on disk are left as they are (they may sit in a read-only install): only the loaded settings change.
    """
    bot = load_bot(directory or example_bot_dir())
    config = bot.config
    integrate = config.integrate.model_copy(
        update={
            "allow_hosts": _merged(config.integrate.allow_hosts, allow_hosts),
            "signing_secret_env": signing_secret_env,
        }
    )
    config = config.model_copy(
        update={"allowed_origins": _merged(config.allowed_origins, origins), "integrate": integrate}
    )
    return Bot(config=config, skills=bot.skills, version=bot_version(config, bot.skills))


def _merged(first: list[str], second: list[str]) -> list[str]:
    """Both lists, in order, without repeats."""
    return list(dict.fromkeys([*first, *second]))
