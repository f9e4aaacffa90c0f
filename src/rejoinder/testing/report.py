"""The report of a run, in the manner of pytest: a line per test, the failures in detail, then the counts."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from rejoinder.testing.results import CaseResult, RunSummary


class Reporter:
    """Prints results as they come (``on_result``) and the failures and counts at the end (``finish``)."""

    def __init__(self, console: Console, *, verbose: bool = False):
        self.console = console
        self.verbose = verbose

    def on_result(self, result: CaseResult) -> None:
        outcome = "[green]PASSED[/green]" if result.passed else "[red]FAILED[/red]"
        self.console.print(f"{escape(result.nodeid)} {outcome}")
        if self.verbose:
            for step in result.steps:
                mark = "[green]ok[/green]" if step.ok else "[red]failed[/red]"
                self.console.print(f"    {escape(result.file)}:{step.line} {escape(step.label)} {mark}")
                for line in step.transcript:
                    self.console.print(f"[dim]        {escape(line)}[/dim]")

    def finish(self, summary: RunSummary) -> None:
        failed = [result for result in summary.results if not result.passed]
        if failed:
            self.console.print()
            self.console.print(_banner("FAILURES", "=", self.console.width), style="red", markup=False)
            for result in failed:
                self.failure(result)
        color = "red" if failed else "green"
        self.console.print(f"[{color}]{summary.line}[/{color}]")

    def failure(self, result: CaseResult) -> None:
        failure = result.failure
        assert failure is not None
        self.console.print(_banner(result.nodeid, "_", self.console.width), style="red", markup=False)
        where = f"{result.file}:{failure.line}: " if failure.line else ""
        self.console.print(escape(where + failure.message))
        if failure.transcript:
            self.console.print("in that turn:")
            for line in failure.transcript:
                self.console.print(f"    {escape(line)}")
        self.console.print()


def _banner(title: str, fill: str, width: int) -> str:
    """``____ title ____`` across the width, never cutting the title (a test id must stay whole)."""
    side = max(1, (width - len(title) - 2) // 2)
    return f"{fill * side} {title} {fill * side}"
