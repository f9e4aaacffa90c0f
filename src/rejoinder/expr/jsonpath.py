"""Simple JSON paths: ``a.b[0].c``, ``$.items[-1]``, ``a["x y"]``.

Used by the ``integrate`` node's ``save:`` (response JSON path → variable) and by ``json_get()``.
A path is a chain of object keys and list indexes; ``$``, ``$.`` and ``.`` alone mean the whole value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

Segment = str | int

_BARE_KEY = re.compile(r"[^.\[\]\s\"']+")
_INDEX = re.compile(r"\[\s*(-?[0-9]+)\s*\]")
_QUOTED = re.compile(r"""\[\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\s*\]""")
_ESCAPE = re.compile(r"\\(.)")
_NUMBER = re.compile(r"-?[0-9]+")


class InvalidPath(ValueError):
    """A path string that does not follow the path syntax."""


class PathNotFound(LookupError):
    """The value has nothing at the path; the message names the first missing segment."""


def parse(path: str) -> tuple[Segment, ...]:
    """The segments of ``path``: keys (str) and list indexes (int). Raises InvalidPath."""
    if not isinstance(path, str):
        raise InvalidPath(f"a path must be text, not {type(path).__name__}")
    return _parse(path)


@lru_cache(maxsize=4096)
def _parse(path: str) -> tuple[Segment, ...]:
    text = path.strip()
    if text.startswith("$"):
        text = text[1:]
    if text in ("", "."):
        if not path.strip():
            raise InvalidPath("empty path")
        return ()
    segments: list[Segment] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "[":
            match = _INDEX.match(text, pos)
            if match:
                segments.append(int(match.group(1)))
            else:
                match = _QUOTED.match(text, pos)
                if not match:
                    expected = 'expected [number] or ["key"]'
                    raise InvalidPath(f"invalid path {path!r}: {expected} at {text[pos:]!r}")
                raw = match.group(1) if match.group(1) is not None else match.group(2)
                segments.append(_ESCAPE.sub(r"\1", raw))
            pos = match.end()
            continue
        if char == ".":
            pos += 1
            if text.startswith("[", pos):
                continue
        elif segments:
            raise InvalidPath(f"invalid path {path!r}: expected '.' or '[' at {text[pos:]!r}")
        match = _BARE_KEY.match(text, pos)
        if not match:
            raise InvalidPath(f"invalid path {path!r}: expected a key at {text[pos:]!r}")
        segments.append(match.group(0))
        pos = match.end()
    return tuple(segments)


def format_path(segments: Sequence[Segment]) -> str:
    """Segments written back as a path, for messages (``$`` for the whole value)."""
    out = ["$"]
    for segment in segments:
        if isinstance(segment, int):
            out.append(f"[{segment}]")
        elif _BARE_KEY.fullmatch(segment):
            out.append(f".{segment}")
        else:
            out.append("[" + '"' + segment.replace("\\", "\\\\").replace('"', '\\"') + '"]')
    return "".join(out)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    return f"a {type(value).__name__}"


def lookup(obj: Any, path: str) -> Any:
    """The value at ``path`` inside ``obj``. Raises PathNotFound (or InvalidPath for a malformed path).

    Keys look up objects; indexes (negative from the end) look up lists. For convenience a numeric key
    indexes a list (``items.0``) and an index looks up an object's key of the same digits.
    """
    segments = parse(path)
    value = obj
    for depth, segment in enumerate(segments):
        if isinstance(value, Mapping):
            key = str(segment) if isinstance(segment, int) else segment
            if key not in value:
                raise PathNotFound(f"no key {key!r} at {format_path(segments[:depth])}")
            value = value[key]
        elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
            index = segment if isinstance(segment, int) else _as_index(segment)
            if index is None:
                raise PathNotFound(f"no key {segment!r} at {format_path(segments[:depth])}: it is a list")
            if not -len(value) <= index < len(value):
                raise PathNotFound(
                    f"no item [{index}] at {format_path(segments[:depth])}: the list has {len(value)} items"
                )
            value = value[index]
        else:
            shown = f"[{segment}]" if isinstance(segment, int) else repr(segment)
            raise PathNotFound(f"no {shown} at {format_path(segments[:depth])}: it is {_kind(value)}")
    return value


def _as_index(key: str) -> int | None:
    return int(key) if _NUMBER.fullmatch(key) else None
