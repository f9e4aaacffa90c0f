"""Shape problems: Pydantic's validation errors, told at the line of the key they are about.

An error's ``loc`` mixes keys of the data with labels Pydantic adds on its own: the node type of the
discriminated union (``("nodes", "greet", "message", "text")``) and the member names of plain unions
(``"RegexInput"``, ``"dict[str,any]"``). Walking the ``loc`` along the data tells the two apart.
"""

from __future__ import annotations

import difflib
import inspect
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from rejoinder.skills.model import NODE_TYPES, Skill
from rejoinder.skills.problems import ERROR, Problem, field_label
from rejoinder.skills.source import Document, SourcePath

_TYPE_ERROR_KINDS = {"model_type", "model_attributes_type", "dataclass_type"}


@dataclass(frozen=True)
class _Located:
    """One Pydantic error placed in the data: the keys it is about, and the union members it went through."""

    error: Any
    path: SourcePath
    members: tuple[tuple[int, str], ...]

    @property
    def kind(self) -> str:
        return str(self.error["type"])

    @property
    def is_type_error(self) -> bool:
        return self.kind.endswith("_type") or self.kind in _TYPE_ERROR_KINDS


def shape_problems(
    exc: ValidationError,
    model: type[BaseModel],
    document: Document,
    *,
    file: str | None,
    skill: str | None,
) -> list[Problem]:
    """One problem per error in ``exc`` (alternatives of a union folded into one), in line order."""
    located = [_locate(error, document.data) for error in exc.errors()]
    problems: list[Problem] = []
    for group in _fold_unions(located):
        message, path = _describe(group, model)
        node = str(path[1]) if model is Skill and len(path) >= 2 and path[0] == "nodes" else None
        problem = Problem(ERROR, message, file=file, line=document.line(path), skill=skill, node=node)
        if problem not in problems:
            problems.append(problem)
    return sorted(problems, key=lambda problem: problem.line or 0)


def _locate(error: Any, data: Any) -> _Located:
    loc: Sequence[Any] = error["loc"]
    missing = error["type"] == "missing"
    current = data
    path: list[Any] = []
    members: list[tuple[int, str]] = []
    for index, element in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(current, dict) and current.get("type") == element and element in NODE_TYPES:
            continue  # the discriminator tag Pydantic adds after a node's id
        if _has(current, element):
            current = current[element]
            path.append(element)
        elif missing and last:
            path.append(element)
        else:
            members.append((len(path), str(element)))  # a union member's name: the data stays where it is
    return _Located(error, tuple(path), tuple(members))


def _has(data: Any, element: Any) -> bool:
    if isinstance(data, dict):
        return element in data
    return isinstance(data, list) and isinstance(element, int) and 0 <= element < len(data)


def _fold_unions(located: list[_Located]) -> list[list[_Located]]:
    """At each union keep only the alternative the author most likely meant; other errors stay single."""
    groups: list[list[_Located]] = []
    unions: dict[tuple[Any, ...], list[_Located]] = {}
    for item in located:
        if not item.members:
            groups.append([item])
            continue
        depth = item.members[0][0]
        key = item.path[:depth]
        if key not in unions:
            unions[key] = []
            groups.append(unions[key])
        unions[key].append(item)

    folded: list[list[_Located]] = []
    for group in groups:
        if len(group) == 1 or not group[0].members:
            folded.append(group)
            continue
        by_member: dict[str, list[_Located]] = {}
        for item in group:
            by_member.setdefault(item.members[0][1], []).append(item)

        def score(items: list[_Located]) -> tuple[bool, int]:
            return (any(not item.is_type_error for item in items), max(len(item.path) for item in items))

        best = max(by_member.values(), key=score)
        if score(best)[0]:
            folded.extend([item] for item in best)
        else:
            folded.append(group)  # every alternative refused the value's type: say what would do
    return folded


def _describe(group: list[_Located], model: type[BaseModel]) -> tuple[str, SourcePath]:
    first = group[0]
    error = first.error
    path = first.path
    kind = first.kind
    if len(group) > 1:
        expected = _join_or(
            sorted({_expectation(item.error["msg"]).removeprefix("should be ") for item in group})
        )
        return _at(path, f"should be {expected}{_got(error)}"), path
    if kind == "extra_forbidden":
        name = str(path[-1])
        fields = _fields_at(model, error["loc"])
        return _at(path[:-1], f"unknown field {name!r}{_suggest(name, fields, 'known fields')}"), path
    if kind == "missing":
        return _at(path[:-1], f"missing required field {path[-1]!r}"), path
    if kind == "union_tag_invalid":
        tag = str(error["ctx"]["tag"])
        close = difflib.get_close_matches(tag, NODE_TYPES, n=1, cutoff=0.7)
        hint = f"did you mean {close[0]!r}? " if close else ""
        message = f"unknown node type {tag!r} ({hint}valid types: {', '.join(NODE_TYPES)})"
        return _at(path, message), (*path, "type")
    if kind == "union_tag_not_found":
        return _at(path, f"a node needs a 'type' (one of: {', '.join(NODE_TYPES)})"), path
    if first.is_type_error and model is Skill and len(path) == 2 and path[0] == "nodes":
        return f"a node must be a mapping with a 'type'{_got(error)}", path
    if kind == "too_short":
        return _at(path, f"needs at least {error['ctx']['min_length']} item(s)"), path
    if kind == "string_pattern_mismatch":
        return _at(path, f"{error['input']!r} does not match the pattern {error['ctx']['pattern']}"), path
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return _at(path, message.removeprefix(prefix)), path
    return _at(path, f"{_expectation(message)}{_got(error)}"), path


def _at(path: SourcePath, message: str) -> str:
    label = field_label(path)
    return f"{label}: {message}" if label else message


def _got(error: Any) -> str:
    value = error.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        shown = repr(value)
        return f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    if isinstance(value, dict | list):
        return f" (got a {'mapping' if isinstance(value, dict) else 'list'})"
    return f" (got {type(value).__name__} {str(value)[:60]!r}; quote it to keep it as text)"


def _expectation(message: str) -> str:
    """Pydantic's ``Input should be a valid dictionary`` as ``should be a mapping``."""
    if message.startswith("Input should be "):
        message = "should be " + message.removeprefix("Input should be ")
    for pydantic_words, ours in _WORDS:
        message = message.replace(pydantic_words, ours)
    return message[:1].lower() + message[1:]


_WORDS = (
    ("a valid dictionary or object to extract fields from", "a mapping"),
    ("a valid dictionary or instance of", "a mapping for"),
    ("a valid dictionary", "a mapping"),
    ("a valid integer", "an integer"),
    ("a valid ", "a "),
)


def _join_or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _suggest(name: str, candidates: Sequence[str], label: str) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.7)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" ({label}: {', '.join(candidates)})" if candidates else ""


# ------------------------------------------------------------------------------ which model a loc is in


def _fields_at(root: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    """The field names (as written in files) of the model that holds ``loc[-1]``."""
    current: Any = root
    for element in loc[:-1]:
        current = _step(current, element)
        if current is None:
            return []
    current = _unwrap(current)
    if inspect.isclass(current) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


def _step(annotation: Any, element: Any) -> Any:
    annotation = _unwrap(annotation)
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if element in (name, info.alias):
                return info.annotation
        return None
    origin = get_origin(annotation)
    if origin is dict:
        return get_args(annotation)[1]
    if origin is list:
        return get_args(annotation)[0]
    if origin in (Union, types.UnionType):
        for member in get_args(annotation):
            member = _unwrap(member)
            if getattr(member, "__name__", None) == element or _type_tag(member) == element:
                return member
    return None


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [member for member in get_args(annotation) if member is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _type_tag(member: Any) -> str | None:
    if inspect.isclass(member) and issubclass(member, BaseModel) and "type" in member.model_fields:
        annotation = member.model_fields["type"].annotation
        if get_origin(annotation) is Literal:
            return str(get_args(annotation)[0])
    return None
