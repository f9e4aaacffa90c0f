"""Reading test files (YAML with the line of every key, strictly validated) and finding them on disk."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import ValidationError

from rejoinder.skills.loader import CONFIG_FILE
from rejoinder.skills.problems import ERROR, Problem, field_label
from rejoinder.skills.shape import shape_problems
from rejoinder.skills.source import Document, SourceSyntaxError, parse_yaml
from rejoinder.testing.model import ConversationTestFile, Located

TEST_SUFFIXES = (".yaml", ".yml")
_NOT_BOTS = frozenset({"node_modules", "__pycache__", "site-packages", "venv"})


class TestFileError(Exception):
    """A test file that cannot be read or does not follow the format; ``problems`` name the file and line."""

    __test__ = False  # not a pytest test class

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def load_test_file(path: Path) -> ConversationTestFile:
    """Read and validate one test file; raise :class:`TestFileError` with every problem found."""
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TestFileError(
            [Problem(ERROR, f"not UTF-8 text ({exc.reason} at byte {exc.start})", shown)]
        ) from None
    except OSError as exc:
        raise TestFileError([Problem(ERROR, f"cannot read the file: {exc.strerror or exc}", shown)]) from None
    try:
        document = parse_yaml(text)
    except SourceSyntaxError as exc:
        raise TestFileError([Problem(ERROR, exc.message, shown, exc.line)]) from None
    if not isinstance(document.data, dict):
        message = "the file is empty" if document.data is None else "expected a mapping of fields"
        raise TestFileError([Problem(ERROR, f"{message}; a test file has a 'tests:' list", shown, 1)])
    problems = [
        Problem(
            ERROR,
            _at(duplicate.path, f"duplicate key {duplicate.key!r} (first at line {duplicate.first_line})"),
            shown,
            duplicate.line,
        )
        for duplicate in document.duplicates
    ]
    try:
        model = ConversationTestFile.model_validate(document.data)
    except ValidationError as exc:
        problems += shape_problems(exc, ConversationTestFile, document, file=shown, skill=None)
        model = None
    if model is None or problems:
        raise TestFileError(sorted(problems, key=lambda problem: problem.line or 0))
    _record_lines(model, document)
    return model


def _at(path: tuple[object, ...], message: str) -> str:
    label = field_label(path)
    return f"{label}: {message}" if label else message


def _record_lines(model: ConversationTestFile, document: Document) -> None:
    def mark(item: Located, *path: str | int) -> None:
        item._line = document.line(path) or 0

    for name in model.env:
        model._env_lines[name] = document.line(("env", name)) or 0
    for i, fake in enumerate(model.http):
        mark(fake, "http", i)
    for t, test in enumerate(model.tests):
        mark(test, "tests", t)
        if test.start is not None:
            mark(test.start, "tests", t, "start")
        for i, fake in enumerate(test.http):
            mark(fake, "tests", t, "http", i)
        for s, step in enumerate(test.steps):
            mark(step, "tests", t, "steps", s)


# ------------------------------------------------------------------------------------------------ discovery


class NoTestsFound(Exception):
    """The command line named nothing that holds tests (or a path that does not exist)."""

    __test__ = False


def find_test_files(paths: Iterable[Path]) -> list[Path]:
    """The test files ``paths`` name: files as given, a bot directory's ``tests/``, bots below a directory.

    Raises :class:`NoTestsFound` for a path that does not exist or when nothing is found at all.
    """
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise NoTestsFound(f"{path}: no such file or directory")
        if path.is_file():
            found.append(path)
        elif (path / CONFIG_FILE).is_file():
            found += _yaml_files(path / "tests")
        elif path.name == "tests" and (path.parent / CONFIG_FILE).is_file():
            found += _yaml_files(path)
        else:
            for bot in _bot_dirs_below(path):
                found += _yaml_files(bot / "tests")
    unique = list(dict.fromkeys(found))
    if not unique:
        named = " ".join(str(path) for path in paths)
        raise NoTestsFound(f"no tests found in {named} (expected BOT_DIR/tests/*.yaml or test files)")
    return unique


def _bot_dirs_below(root: Path) -> list[Path]:
    """Bot directories under ``root``, skipping hidden directories and virtualenv/package caches."""
    bots = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith(".") and d not in _NOT_BOTS)
        if CONFIG_FILE in files:
            bots.append(Path(directory))
    return bots


def _yaml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in TEST_SUFFIXES)


def bot_dir_of(test_file: Path, model: ConversationTestFile) -> Path:
    """The bot a test file tests: ``bot:`` relative to the file, else the directory that holds ``tests/``."""
    if model.bot is not None:
        return (test_file.parent / model.bot).resolve()
    return test_file.resolve().parent.parent
