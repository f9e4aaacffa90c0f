"""Every setting of :class:`rejoinder.config.Settings` is in the settings table of docs/operations.md, under its
environment variable and with its default."""

from __future__ import annotations

import re

from rejoinder.config import Settings
from tests.helpers.bots import ROOT

_ROW = re.compile(r"^\| `(REJOINDER_[A-Z0-9_]+)` \| `?([^`|]*?)`? \|", re.MULTILINE)


def documented() -> dict[str, str]:
    text = (ROOT / "docs" / "operations.md").read_text()
    return {name: default.strip() for name, default in _ROW.findall(text)}


def test_every_setting_is_in_the_operations_table_with_its_default() -> None:
    table = documented()
    prefix = Settings.model_config["env_prefix"]
    for name, field in Settings.model_fields.items():
        variable = f"{prefix}{name}".upper()
        assert variable in table, f"{variable} is not in docs/operations.md's settings table"
        shown = table[variable]
        if field.default is None:
            assert shown == "none", variable
        elif isinstance(field.default, str):
            assert shown == field.default, variable
        else:
            assert float(shown) == field.default, variable
