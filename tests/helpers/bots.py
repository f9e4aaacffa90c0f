"""Bot directories for tests: the example shop, and small bots written from YAML text."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_BOT = ROOT / "examples" / "shop"
# The secret the shop's backend signs a logged-in user's id with (``SHOP_IDENTITY_SECRET``).
IDENTITY_SECRET = "identity-secret-for-tests"

# Greets on ``hello`` (or anything else), then echoes what the customer says, over and over.
TALK_SKILL = """\
id: talk
triggers: {events: [hello], default: true}
start: greet
nodes:
  greet: {type: message, text: "Hello!", next: ask}
  ask: {type: question, text: "Say something", save_to: said, next: echo}
  echo: {type: message, text: "You said {{ said }}", next: ask}
"""


def write_bot(root: Path, config: str, skills: Mapping[str, str]) -> Path:
    """A bot directory at ``root``: ``config`` as its rejoinder.yaml and each skill as ``skills/<name>.yaml``."""
    (root / "skills").mkdir(parents=True)
    (root / "rejoinder.yaml").write_text(config)
    for name, text in skills.items():
        (root / "skills" / f"{name}.yaml").write_text(text)
    return root


def copy_shop(
    directory: Path,
    origins: list[str],
    settings: dict[str, Any] | None = None,
    extra_skills: Path | None = None,
) -> Path:
    """The example shop copied to ``directory``, allowing ``origins`` too, with ``settings`` added to its
    rejoinder.yaml and the skills of ``extra_skills`` (a directory of YAML files) beside its own."""
    shutil.copytree(EXAMPLE_BOT, directory, ignore=shutil.ignore_patterns("tests", "__pycache__", "*.py"))
    config_path = directory / "rejoinder.yaml"
    config = {**yaml.safe_load(config_path.read_text()), **(settings or {})}
    config["allowed_origins"] = sorted({*config.get("allowed_origins", []), *origins})
    config_path.write_text(yaml.safe_dump(config))
    if extra_skills is not None and extra_skills.is_dir():
        for skill in extra_skills.glob("*.yaml"):
            shutil.copy(skill, directory / "skills" / skill.name)
    return directory
