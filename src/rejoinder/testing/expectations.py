"""Expectations: what a turn produced (:class:`Turn`) against what a step says it should be.

Each check returns quietly when the step holds and raises :class:`StepFailed` with the reason and the turn's
transcript when it does not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from rejoinder.engine import HttpCall
from rejoinder.store import MessageRecord
from rejoinder.testing.match import call_mismatch, describe_call, mismatch
from rejoinder.testing.model import Step


class StepFailed(Exception):
    """A step that did not hold: the line, the reason, and the turn it looked at (as transcript lines)."""

    def __init__(self, line: int, message: str, transcript: list[str] | None = None):
        super().__init__(message)
        self.line = line
        self.message = message
        self.transcript = transcript or []


@dataclass
class Turn:
    """What one customer action (or the resume) produced, as the steps after it see it."""

    number: int
    line: int
    messages: list[MessageRecord]
    pending: dict[str, Any] | None
    status: str
    errors: list[str] = field(default_factory=list)
    calls: list[HttpCall] = field(default_factory=list)
    errors_checked: bool = False

    @property
    def said(self) -> list[MessageRecord]:
        return [message for message in self.messages if message.sender != "customer"]

    @property
    def texts(self) -> list[str]:
        return [str(message.payload.get("text", "")) for message in self.said]

    def transcript(self) -> list[str]:
        lines = []
        for message in self.messages:
            lines.append(f"{message.sender}: {message.payload.get('text', '')}")
            labels = [str(button.get("label", "")) for button in message.payload.get("buttons") or []]
            if labels:
                lines.append("    buttons: " + " | ".join(labels))
        if not self.said:
            lines.append("(the bot said nothing)")
        lines += [f"(Integrate call: {describe_call(call)})" for call in self.calls]
        lines += [f"(skill error: {error})" for error in self.errors]
        if self.pending is not None:
            lines.append(f"(waits at question {self.pending.get('node')!r})")
        if self.status != "active":
            lines.append(f"(conversation {self.status})")
        return lines

    def fail(self, step: Step, message: str) -> StepFailed:
        return StepFailed(step.line, message, self.transcript())


def check_bot(step: Step, turn: Turn) -> None:
    if not any(str(step.bot) in text for text in turn.texts):
        raise turn.fail(step, f"expected a bot message containing {step.bot!r}")


def check_bot_exact(step: Step, turn: Turn) -> None:
    wanted = step.bot_exact
    if isinstance(wanted, list):
        if turn.texts != wanted:
            raise turn.fail(step, f"expected the bot to say exactly {as_json(wanted)}, in order")
    elif wanted not in turn.texts:
        raise turn.fail(step, f"expected a bot message equal to {wanted!r}")


def check_bot_matches(step: Step, turn: Turn) -> None:
    pattern = re.compile(str(step.bot_matches))
    if not any(pattern.search(text) for text in turn.texts):
        raise turn.fail(step, f"expected a bot message matching /{pattern.pattern}/")


def check_buttons(step: Step, turn: Turn) -> None:
    labels = [str(button.get("label")) for m in turn.said for button in m.payload.get("buttons") or []]
    if labels != step.buttons:
        raise turn.fail(step, f"expected the buttons {as_json(step.buttons)}, got {as_json(labels)}")


def check_http_called(step: Step, turn: Turn) -> None:
    expectation = step.http_called
    assert expectation is not None
    criteria = expectation.criteria()
    reasons = [call_mismatch(criteria, call) for call in turn.calls]
    found = sum(reason is None for reason in reasons)
    times = expectation.times
    if (found >= 1) if times is None else (found == times):
        return
    wanted = f"{times} call(s)" if times is not None else "a call"
    lines = [f"expected {wanted} matching {as_json(criteria)} in this turn, found {found}"]
    if not turn.calls:
        lines.append("this turn made no Integrate calls")
    for call, reason in zip(turn.calls, reasons, strict=True):
        lines.append(f"  {describe_call(call)}\n    ({reason or 'matches'})")
    raise turn.fail(step, "\n".join(lines))


def check_pending(step: Step, turn: Turn) -> None:
    if step.pending is None:
        if turn.pending is not None:
            raise turn.fail(
                step, f"expected the bot to wait for nothing, it waits for {as_json(turn.pending)}"
            )
        return
    if turn.pending is None:
        raise turn.fail(step, "expected the bot to wait at a question, it waits for nothing")
    reason = mismatch(step.pending.criteria(), turn.pending, "pending")
    if reason:
        raise turn.fail(step, reason)


def check_errors(step: Step, turn: Turn) -> None:
    """Each pattern matches one of the turn's skill errors and each error a pattern; the errors are then expected."""
    patterns = step.errors or []
    missing = [p for p in patterns if not any(fnmatchcase(error, p) for error in turn.errors)]
    extra = [error for error in turn.errors if not any(fnmatchcase(error, p) for p in patterns)]
    if missing or extra:
        lines = [f"expected skill errors matching {as_json(patterns)}"]
        lines += [f"  no error matches {p!r}" for p in missing]
        lines += [f"  unexpected error: {error}" for error in extra]
        raise turn.fail(step, "\n".join(lines))
    turn.errors_checked = True


def check_variables(step: Step, turn: Turn, variables: Mapping[str, Any]) -> None:
    """The stored variables have the step's exact values (``1`` is not ``true``); others are not looked at."""
    for name, wanted in (step.variables or {}).items():
        if name not in variables:
            known = ", ".join(sorted(variables)) or "none"
            raise turn.fail(step, f"variable {name!r} is not set (set: {known})")
        got = variables[name]
        if got != wanted or isinstance(got, bool) != isinstance(wanted, bool):
            raise turn.fail(step, f"variable {name!r}: expected {as_json(wanted)}, got {as_json(got)}")


def check_status(step: Step, turn: Turn, status: str) -> None:
    if status != step.status:
        raise turn.fail(step, f"expected the conversation to be {step.status}, it is {status}")


# The expectations that look at the last turn only, by step key.
TURN_CHECKS: dict[str, Callable[[Step, Turn], None]] = {
    "bot": check_bot,
    "bot_exact": check_bot_exact,
    "bot_matches": check_bot_matches,
    "buttons": check_buttons,
    "http_called": check_http_called,
    "pending": check_pending,
    "errors": check_errors,
}


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
