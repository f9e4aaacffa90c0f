"""What the loader and the validator report: problems that name the file, the line, the skill and the node."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One finding about a bot or a skill. ``severity`` is ``"error"`` (blocks loading) or ``"warning"``."""

    severity: str
    message: str
    file: str | None = None
    line: int | None = None
    skill: str | None = None
    node: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    @property
    def location(self) -> str:
        """``file:line`` (or the parts known), empty when neither is known."""
        if self.file is None:
            return f"line {self.line}" if self.line is not None else ""
        return self.file if self.line is None else f"{self.file}:{self.line}"

    def format(self, *, severity: bool = False) -> str:
        """``file:line: [severity: ]skill 'x', node 'y': message``, leaving out the parts not known."""
        context = ", ".join(
            part
            for part in (
                f"skill {self.skill!r}" if self.skill is not None else "",
                f"node {self.node!r}" if self.node is not None else "",
            )
            if part
        )
        parts = [self.location, self.severity if severity else "", context, self.message]
        return ": ".join(part for part in parts if part)

    def __str__(self) -> str:
        return self.format()


def field_label(path: Sequence[Any]) -> str:
    """How a place in a file is named in messages: ``branches[0].next`` inside a node, dotted elsewhere."""
    if len(path) >= 2 and path[0] == "nodes":
        path = path[2:]
    text = ""
    for element in path:
        text += f"[{element}]" if isinstance(element, int) else f"{'.' if text else ''}{element}"
    return text


def errors(problems: Iterable[Problem]) -> list[Problem]:
    """Only the problems that block loading."""
    return [problem for problem in problems if problem.is_error]


class BotLoadError(Exception):
    """A bot or skill could not be loaded; ``problems`` holds every error found (not only the first)."""

    def __init__(self, problems: Iterable[Problem], *, what: str = "bot") -> None:
        self.problems = errors(problems)
        count = len(self.problems)
        header = f"cannot load {what}: {count} error{'' if count == 1 else 's'}"
        super().__init__("\n".join([header, *(str(problem) for problem in self.problems)]))
