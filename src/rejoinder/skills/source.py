"""Reading YAML or JSON while remembering where every key came from.

PyYAML's composer gives each node a position; walking the composed tree builds a map from the path of keys
(``("nodes", "greet", "next")``) to a line number, and finds duplicate keys, which PyYAML itself silently
collapses into the last one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

SourcePath = tuple[Any, ...]

# An anchor/alias bomb expands to billions of values; a skill never needs more than this.
MAX_EXPANDED_VALUES = 100_000

_MERGE_TAG = "tag:yaml.org,2002:merge"
_BOOL_TAG = "tag:yaml.org,2002:bool"


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans (only ``true``/``false``): a choice value ``yes`` or a node ``no`` stays text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


class SourceSyntaxError(Exception):
    """The text is not valid YAML (or JSON); ``line`` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(frozen=True)
class DuplicateKey:
    """A key written twice in one mapping."""

    path: SourcePath
    key: Any
    line: int
    first_line: int


@dataclass(frozen=True)
class Document:
    """Parsed data with the line of every key and list item."""

    data: Any
    lines: dict[SourcePath, int] = field(default_factory=dict)
    duplicates: tuple[DuplicateKey, ...] = ()

    def line(self, path: SourcePath) -> int | None:
        """The line of ``path``, or of its nearest enclosing key when the path itself was not written."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return None


def parse_yaml(text: str) -> Document:
    """Parse YAML (JSON is YAML too) keeping positions. Raises :class:`SourceSyntaxError`."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return Document(data=None)
        _check_size(root)
        data = loader.construct_document(root)
        lines: dict[SourcePath, int] = {(): root.start_mark.line + 1}
        duplicates: list[DuplicateKey] = []
        _walk(loader, root, (), lines, duplicates, set())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or "bad syntax"
        details = [f"column {mark.column + 1}"] if mark is not None else []
        if exc.context and problem.startswith("but "):
            problem = f"{exc.context}, {problem}"
        elif exc.context and exc.context_mark is not None and exc.context_mark is not mark:
            details.append(f"{exc.context} started at line {exc.context_mark.line + 1}")
        elif exc.context:
            details.append(exc.context)
        if "<block" in problem:
            details.append("check the indentation")
        message = f"invalid YAML: {problem}" + (f" ({'; '.join(details)})" if details else "")
        raise SourceSyntaxError(message, mark.line + 1 if mark else None) from exc
    except RecursionError as exc:
        raise SourceSyntaxError("invalid YAML: the document nests too deeply") from exc
    except yaml.YAMLError as exc:
        position = getattr(exc, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else None
        raise SourceSyntaxError(f"invalid YAML: {exc}", line) from exc
    finally:
        loader.dispose()
    return Document(data=data, lines=lines, duplicates=tuple(duplicates))


def parse_json(text: str) -> Document:
    """Parse JSON with the JSON parser's own error messages; positions come from reading it as YAML."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceSyntaxError(f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from exc
    except RecursionError as exc:
        raise SourceSyntaxError("invalid JSON: the document nests too deeply") from exc
    try:
        document = parse_yaml(text)
    except SourceSyntaxError:
        # Valid JSON that the YAML reader rejects (rare escapes): the data stands, only lines are unknown.
        return Document(data=data)
    return Document(data=data, lines=document.lines, duplicates=document.duplicates)


def _check_size(root: Node) -> None:
    sizes: dict[int, int] = {}

    def size(node: Node, depth: int) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if depth > 200:
            raise SourceSyntaxError("the document nests too deeply", node.start_mark.line + 1)
        sizes[id(node)] = 1  # a recursive alias counts once instead of looping
        total = 1
        if isinstance(node, MappingNode):
            total += sum(size(key, depth + 1) + size(value, depth + 1) for key, value in node.value)
        elif isinstance(node, SequenceNode):
            total += sum(size(item, depth + 1) for item in node.value)
        if total > MAX_EXPANDED_VALUES:
            raise SourceSyntaxError(
                f"the document expands to over {MAX_EXPANDED_VALUES} values (check its anchors and aliases)",
                node.start_mark.line + 1,
            )
        sizes[id(node)] = total
        return total

    size(root, 0)


def _walk(
    loader: _Loader,
    node: Node,
    path: SourcePath,
    lines: dict[SourcePath, int],
    duplicates: list[DuplicateKey],
    active: set[int],
) -> None:
    if id(node) in active:  # a recursive alias
        return
    active.add(id(node))
    if isinstance(node, MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, ScalarNode):
                continue
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue
            line = key_node.start_mark.line + 1
            if key in seen:
                duplicates.append(DuplicateKey(path, key, line, seen[key]))
            else:
                seen[key] = line
            lines[(*path, key)] = line
            _walk(loader, value_node, (*path, key), lines, duplicates, active)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _walk(loader, item, (*path, index), lines, duplicates, active)
    active.discard(id(node))
