"""How every ``rejoinder`` command group is made."""

from __future__ import annotations

from typing import Any

import typer


def new_app(**settings: Any) -> typer.Typer:
    """A command group with plain help.

    Plain help (click's) shows a flag as just its name, where the Rich help shows ``--help <bool>`` as if it took
    a value; it also spares ``--help`` the import of Rich.
    """
    return typer.Typer(
        no_args_is_help=True,
        add_completion=False,
        rich_markup_mode=None,
        # As wide as the terminal, up to 120 columns (click stops at 80), so that summaries are not cut short.
        context_settings={"max_content_width": 120},
        **settings,
    )
