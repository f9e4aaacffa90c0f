"""``rejoinder skills check|graph``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from rejoinder.cli.typer_app import new_app

if TYPE_CHECKING:
    from rich.console import Console

    from rejoinder.skills import Problem, Skill

app = new_app(help="Validate and draw skills.")

_COLORS = {"error": "red", "warning": "yellow"}


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    dot = "dot"
    svg = "svg"


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    # soft_wrap: a long "file:line:" line stays one line when piped or read by an editor.
    return Console(soft_wrap=True, highlight=False, emoji=False, stderr=stderr)


@app.command()
def check(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Bot directories and/or skill files.", metavar="PATH", show_default=False),
    ],
) -> None:
    """Validate bot directories and skill files; exit 1 on any error (warnings are shown, not fatal)."""
    from rich.markup import escape

    from rejoinder.skills import check_report

    report = check_report(paths)
    console = _console()
    for problem in report.problems:
        _print_problem(console, problem)
    errors, warnings = len(report.errors), len(report.warnings)
    summary = f"{_count(errors, 'error')}, {_count(warnings, 'warning')} in {_count(report.skills, 'skill')}"
    style = "red" if errors else "yellow" if warnings else "green"
    console.print(f"[{style}]{escape(summary)}[/{style}]")
    if errors:
        raise typer.Exit(1)


@app.command()
def graph(
    path: Annotated[
        Path,
        typer.Argument(
            help="A skill file, or a bot directory to draw whole (every skill, and the jumps between them).",
            metavar="SKILL_FILE|BOT_DIR",
            show_default=False,
        ),
    ],
    fmt: Annotated[GraphFormat, typer.Option("--format", "-f", help="Output format.")] = GraphFormat.mermaid,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Draw a skill or a whole bot as a Mermaid flowchart, Graphviz dot, or SVG (needs Graphviz's `dot`)."""
    from rejoinder.skills import render_svg
    from rejoinder.skills.graph import bot_to_dot, bot_to_mermaid, to_dot, to_mermaid

    if path.is_dir():
        skills, name = _bot_skills(path)
        mermaid, dot = bot_to_mermaid(skills), bot_to_dot(skills, name)
    else:
        skill = _one_skill(path)
        mermaid, dot = to_mermaid(skill), to_dot(skill)
    if fmt is GraphFormat.mermaid:
        drawing: str | bytes = mermaid
    elif fmt is GraphFormat.dot:
        drawing = dot
    else:
        try:
            drawing = render_svg(dot)
        except RuntimeError as exc:  # GraphvizMissing included: its message says what to do
            _fail(str(exc))
    if output is not None:
        try:
            if isinstance(drawing, bytes):
                output.write_bytes(drawing)
            else:
                output.write_text(drawing, encoding="utf-8")
        except OSError as exc:
            _fail(f"{output}: cannot write: {exc.strerror or exc}")
        return
    typer.echo(drawing, nl=False)


def _one_skill(skill_file: Path) -> Skill:
    from rejoinder.skills import read_skill

    try:
        text = skill_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{skill_file}: cannot read: {getattr(exc, 'strerror', None) or exc}")
    source, problems = read_skill(text, filename=str(skill_file))
    if source is None:
        _fail_with(problems, f"{skill_file}: cannot draw a skill that does not load; fix the errors above")
    return source.skill


def _bot_skills(bot_dir: Path) -> tuple[dict[str, Skill], str]:
    """The skills of a bot directory and the bot's id; a bot with errors is not drawn."""
    from rejoinder.skills import check_bot
    from rejoinder.skills.problems import errors

    bot, problems = check_bot(bot_dir)
    if bot is None:
        _fail_with(errors(problems), f"{bot_dir}: cannot draw a bot that does not load; fix the errors above")
    return bot.skills, bot.id


def _fail_with(problems: list[Problem], reason: str) -> NoReturn:
    console = _console(stderr=True)
    for problem in problems:
        _print_problem(console, problem)
    _fail(reason)


def _print_problem(console: Console, problem: Problem) -> None:
    from rich.markup import escape

    color = _COLORS.get(problem.severity, "default")
    console.print(f"[{color}]{escape(problem.format(severity=True))}[/{color}]")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _fail(reason: str) -> NoReturn:
    typer.echo(f"rejoinder skills: {reason}", err=True)
    raise typer.Exit(1)
