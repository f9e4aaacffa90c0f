"""``rejoinder test``: run a bot's conversation tests and report like pytest.

Exit status: 0 when every test passed, 1 when any failed (a test file that does not load counts as failed),
2 for a usage error or when no test was found.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

USAGE_ERROR = 2


def test(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="PATH",
            help="Test files, bot directories (their tests/*.yaml), or directories holding bots.",
        ),
    ],
    select: Annotated[
        str | None,
        typer.Option(
            "-k", metavar="TEXT", help="Run only the tests whose name contains this text (case ignored)."
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="Print every step and what the bot said.")
    ] = False,
) -> None:
    """Run conversation tests (BOT_DIR/tests/*.yaml); the bot's Integrate calls are answered by fakes."""
    # Imported here so that the other commands start fast.
    import asyncio

    from rich.console import Console
    from rich.markup import escape

    from rejoinder.store import StoreError
    from rejoinder.testing import NoTestsFound, Reporter, run_tests

    out = Console(soft_wrap=True, highlight=False)
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    # Skill faults are part of the report; the service's log lines would only repeat them on stderr.
    logging.getLogger("rejoinder").addHandler(logging.NullHandler())
    reporter = Reporter(out, verbose=verbose)
    try:
        summary = asyncio.run(run_tests(paths, select=select, on_result=reporter.on_result))
    except NoTestsFound as exc:
        err.print(f"rejoinder test: {escape(str(exc))}")
        raise typer.Exit(USAGE_ERROR) from None
    except StoreError as exc:
        err.print(f"rejoinder test: the test database failed: {escape(str(exc))}")
        raise typer.Exit(1) from None
    reporter.finish(summary)
    raise typer.Exit(1 if summary.failed else 0)
