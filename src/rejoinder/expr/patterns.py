"""Regular expressions from skills, run by RE2: matching time grows linearly with the text, whatever the pattern.

Python's ``re`` backtracks, so a pattern such as ``([A-Za-z]+ ?)*`` against ``"a" * 30 + "!"`` runs for minutes.
RE2 never backtracks; in exchange it has no backreferences (``\\1``) and no lookarounds (``(?=…)``, ``(?<!…)``),
and such patterns are refused when a skill is loaded.

RE2's ``\\d``, ``\\w`` and ``\\s`` are ASCII-only, Python's are Unicode: they are rewritten to their Unicode
classes so that ``\\w+`` still takes ``"José"``. ``\\b`` stays ASCII-only (RE2 has no Unicode word boundary).
"""

from __future__ import annotations

import functools
from typing import Any

import re2

MAX_PATTERN_LENGTH = 500  # longer patterns are refused: a skill's pattern is a few dozen characters
_MAX_PROGRAM_MEMORY = 8 << 20  # bytes RE2 may use for one compiled pattern

_OPTIONS = re2.Options()
_OPTIONS.log_errors = (
    False  # a refused pattern is reported to the bot designer, not logged by the C++ library
)
_OPTIONS.max_mem = _MAX_PROGRAM_MEMORY

_SPACE = r"\t\n\v\f\r \x{1c}-\x{1f}\x{85}\p{Z}"
_IN_CLASS = {"d": r"\p{Nd}", "w": r"\p{L}\p{N}_", "s": _SPACE, "D": r"\P{Nd}"}
_OUTSIDE = {
    "d": r"\p{Nd}",
    "w": r"[\p{L}\p{N}_]",
    "s": f"[{_SPACE}]",
    "D": r"\P{Nd}",
    "W": r"[^\p{L}\p{N}_]",
    "S": f"[^{_SPACE}]",
}


class PatternError(ValueError):
    """A pattern the regular expression engine cannot take."""


def _unicode_classes(pattern: str) -> str:
    """``pattern`` with ``\\d``, ``\\w``, ``\\s`` (and their negations) as Unicode classes, as in Python."""
    out: list[str] = []
    in_class = False
    index = 0
    length = len(pattern)
    while index < length:
        char = pattern[index]
        if char == "\\" and index + 1 < length:
            escaped = pattern[index + 1]
            table = _IN_CLASS if in_class else _OUTSIDE
            out.append(table.get(escaped, char + escaped))
            index += 2
            continue
        if in_class:
            if char == "[" and pattern.startswith("[:", index):  # [[:alpha:]] inside a class
                end = pattern.find(":]", index + 2)
                if end != -1:
                    out.append(pattern[index : end + 2])
                    index = end + 2
                    continue
            if char == "]":
                in_class = False
        elif char == "[":
            in_class = True
            out.append(char)
            index += 1
            # A ']' first in a class (after an optional '^') is a literal character.
            if pattern.startswith("^", index):
                out.append("^")
                index += 1
            if pattern.startswith("]", index):
                out.append(r"\]")
                index += 1
            continue
        out.append(char)
        index += 1
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """The compiled pattern (cached). Raises :class:`PatternError` with a message for a bot designer."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"the pattern is longer than {MAX_PATTERN_LENGTH} characters")
    try:
        return re2.compile(_unicode_classes(pattern), _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise PatternError(
            f"invalid regular expression {pattern!r}: {_explained(str(reason), pattern)}"
        ) from None


def _explained(reason: str, pattern: str) -> str:
    """RE2's reason, with what to do about the constructs it leaves out."""
    if ("invalid escape sequence: \\" in reason and reason[-1:].isdigit()) or "(?P=" in pattern:
        return f"{reason} (backreferences are not supported)"
    if "invalid perl operator: (?<" in reason or "invalid perl operator: (?=" in reason:
        return f"{reason} (lookarounds are not supported)"
    if "invalid perl operator: (?!" in reason:
        return f"{reason} (lookarounds are not supported)"
    return reason


def fullmatch(pattern: str, text: str) -> bool:
    """Whether the whole of ``text`` matches ``pattern``."""
    return compile_pattern(pattern).fullmatch(text) is not None


def search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches anywhere in ``text``."""
    return compile_pattern(pattern).search(text) is not None
