"""Loading bots and skills from files or uploaded text, with every problem told at its file and line.

A bot is a directory: ``rejoinder.yaml`` (its settings), ``skills/*.yaml|*.yml|*.json``, optional ``tests/``.
Nothing here reads environment variables: a bot's ``env:`` list only names what skills may read at run time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from rejoinder.skills.model import Bot, BotConfig, Skill
from rejoinder.skills.problems import ERROR, WARNING, BotLoadError, Problem, errors, field_label
from rejoinder.skills.shape import shape_problems
from rejoinder.skills.source import Document, SourcePath, SourceSyntaxError, parse_json, parse_yaml
from rejoinder.skills.validate import validate_bot, validate_skill, validate_skills

CONFIG_FILE = "rejoinder.yaml"
SKILLS_DIR = "skills"
SKILL_SUFFIXES = (".yaml", ".yml", ".json")
VERSION_LENGTH = 12


@dataclass(frozen=True)
class SkillSource:
    """A skill whose shape is valid, with where it came from: the file name and the line of every key."""

    skill: Skill
    file: str | None
    document: Document

    def line(self, path: SourcePath) -> int | None:
        return self.document.line(path)


@dataclass(frozen=True)
class CheckReport:
    """What checking some paths found, and how many skill files were looked at."""

    problems: list[Problem]
    skills: int

    @property
    def errors(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.is_error]

    @property
    def warnings(self) -> list[Problem]:
        return [problem for problem in self.problems if not problem.is_error]


# ------------------------------------------------------------------------------------------ one skill


def read_skill(
    text: str, *, filename: str = "<upload>", content_type: str | None = None
) -> tuple[SkillSource | None, list[Problem]]:
    """Parse one skill and check its shape (fields, types, node types), not yet its graph."""
    document, problems = _read_document(text, filename, json_body=_is_json(filename, content_type))
    if document is None:
        return None, problems
    skill_id = _declared_id(document.data)
    problems = [replace(problem, skill=problem.skill or skill_id) for problem in problems]
    model = _validated(Skill, document, filename, skill_id, problems)
    if model is None or errors(problems):
        return None, problems
    assert isinstance(model, Skill)
    return SkillSource(model, filename, document), problems


def parse_skill(
    text: str, *, filename: str = "<upload>", content_type: str | None = None
) -> tuple[Skill | None, list[Problem]]:
    """Parse and validate one skill on its own; the skill comes back only when there is no error.

    ``content_type`` ``application/json`` (or a ``.json`` filename) reads the text as JSON.
    Jumps to other skills and ``env.NAME`` need the bot: see :func:`with_skill` and :func:`validate_bot`.
    """
    source, problems = read_skill(text, filename=filename, content_type=content_type)
    if source is None:
        return None, problems
    problems = problems + validate_skill(source.skill, source)
    return (None if errors(problems) else source.skill), problems


def with_skill(
    bot: Bot,
    text: str,
    *,
    filename: str = "<upload>",
    content_type: str | None = None,
    sources: dict[str, SkillSource] | None = None,
) -> tuple[Bot | None, list[Problem]]:
    """``bot`` with the skill in ``text`` added or replacing the one with its id, checked as a whole bot.

    Returns the new bot (with a new version) only when there is no error. ``sources`` (by skill id) give the
    other skills' problems their lines.
    """
    source, problems = read_skill(text, filename=filename, content_type=content_type)
    if source is None:
        return None, problems
    skills = {**bot.skills, source.skill.id: source.skill}
    candidate = Bot(config=bot.config, skills=skills, version=bot_version(bot.config, skills))
    problems = problems + validate_bot(candidate, {**(sources or {}), source.skill.id: source})
    return (None if errors(problems) else candidate), problems


# ------------------------------------------------------------------------------------------ a bot


def check_bot(path: str | Path) -> tuple[Bot | None, list[Problem]]:
    """Load the bot directory at ``path`` and report every problem; the bot comes back only without errors."""
    root = Path(path)
    problems: list[Problem] = []
    config = _read_config(root, problems)
    sources: dict[str, SkillSource] = {}
    unparsed: set[str] = set()
    files = skill_files(root)
    if config is not None and not files:
        problems.append(Problem(WARNING, f"the bot has no skills (no {SKILLS_DIR}/*.yaml)", file=str(root)))
    for file in files:
        text, read_problem = _read_text(file)
        if text is None:
            problems.append(read_problem or Problem(ERROR, "cannot read the file", file=str(file)))
            continue
        source, found = read_skill(text, filename=str(file))
        problems.extend(found)
        if source is None:
            # Jumps to a skill that failed to load are not reported a second time.
            unparsed.update({file.stem, *(problem.skill for problem in found if problem.skill)})
            continue
        first = sources.get(source.skill.id)
        if first is not None:
            message = f"id: skill id {source.skill.id!r} is already used by {first.file}"
            line = source.line(("id",))
            problems.append(Problem(ERROR, message, file=source.file, line=line, skill=source.skill.id))
            continue
        sources[source.skill.id] = source
    skills = {skill_id: source.skill for skill_id, source in sources.items()}
    if config is None:  # already reported; the skills are still checked together, minus the env rule
        problems.extend(validate_skills(skills, sources=sources, whole_bot=True, unparsed=unparsed))
        return None, problems
    bot = Bot(config=config, skills=skills, version=bot_version(config, skills))
    problems.extend(validate_bot(bot, sources, unparsed=unparsed))
    return (None if errors(problems) else bot), problems


def load_bot(path: str | Path) -> Bot:
    """Load the bot directory at ``path``. Raises :class:`BotLoadError` listing every error; warnings pass."""
    bot, problems = check_bot(path)
    if bot is None:
        raise BotLoadError(problems, what=f"bot {str(path)!r}")
    return bot


def bot_version(config: BotConfig, skills: dict[str, Skill]) -> str:
    """A short SHA-256 of the bot's settings and skills: the same files always give the same version.

    Hashes the parsed content (not the raw text), so comments and formatting do not make a new version.
    """
    content = {
        "config": config.model_dump(mode="json", by_alias=True),
        "skills": {key: skills[key].model_dump(mode="json", by_alias=True) for key in sorted(skills)},
    }
    encoded = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:VERSION_LENGTH]


def skill_files(path: str | Path) -> list[Path]:
    """The skill files of a bot directory (sorted by name), or ``[path]`` for a single file."""
    root = Path(path)
    if root.is_file():
        return [root]
    folder = root / SKILLS_DIR
    if not folder.is_dir():
        return []
    return sorted(
        file
        for file in folder.iterdir()
        if file.is_file() and file.suffix.lower() in SKILL_SUFFIXES and not file.name.startswith(".")
    )


# ------------------------------------------------------------------------------------------ paths


def check_paths(paths: Iterable[str | Path]) -> list[Problem]:
    """Every problem in the given bot directories and skill files."""
    return check_report(paths).problems


def check_report(paths: Iterable[str | Path]) -> CheckReport:
    """Check bot directories and skill files.

    A skill file inside a bot (``BOT/skills/x.yaml``) is checked with its bot, so its jumps, ``env.NAME`` and
    variables are known; only that file's problems are reported.
    """
    jobs: list[_BotJob | Path] = []  # in the order given; a Path is a skill file outside any bot
    bots: dict[Path, _BotJob] = {}
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            problems.append(Problem(ERROR, "no such file or directory", file=str(path)))
            continue
        if path.is_file() and path.name == CONFIG_FILE:
            path = path.parent
        if path.is_dir() and not (path / CONFIG_FILE).is_file():
            message = (
                f"not a bot directory: no {CONFIG_FILE} in it (a bot holds {CONFIG_FILE} and {SKILLS_DIR}/)"
            )
            problems.append(Problem(ERROR, message, file=str(path)))
            continue
        root = path if path.is_dir() else _bot_dir_of(path)
        if root is None:
            jobs.append(path)
            continue
        job = bots.get(root.resolve())
        if job is None:
            job = bots[root.resolve()] = _BotJob(root, set())
            jobs.append(job)
        if path.is_dir():
            job.only = None
        elif job.only is not None:
            job.only.add(path.resolve())

    counted: set[Path] = set()
    for task in jobs:
        if isinstance(task, Path):
            problems.extend(_check_file(task))
            counted.add(task.resolve())
            continue
        _, found = check_bot(task.root)
        if task.only is None:
            problems.extend(found)
            counted.update(file.resolve() for file in skill_files(task.root))
        else:
            only = task.only
            problems.extend(p for p in found if p.file is not None and Path(p.file).resolve() in only)
            counted.update(only)
    return CheckReport(problems, len(counted))


@dataclass
class _BotJob:
    root: Path
    only: set[Path] | None  # None: the whole bot was asked for


def _check_file(path: Path) -> list[Problem]:
    text, problem = _read_text(path)
    if text is None:
        return [problem] if problem else []
    _, problems = parse_skill(text, filename=str(path))
    return problems


def _bot_dir_of(file: Path) -> Path | None:
    folder = file.parent
    if folder.name == SKILLS_DIR and (folder.parent / CONFIG_FILE).is_file():
        return folder.parent
    return None


# ------------------------------------------------------------------------------------------ reading


def _read_config(root: Path, problems: list[Problem]) -> BotConfig | None:
    file = root / CONFIG_FILE
    if not root.is_dir():
        problems.append(Problem(ERROR, "not a bot directory", file=str(root)))
        return None
    if not file.is_file():
        message = f"no {CONFIG_FILE}: a bot directory holds {CONFIG_FILE} and {SKILLS_DIR}/"
        problems.append(Problem(ERROR, message, file=str(root)))
        return None
    text, problem = _read_text(file)
    if text is None:
        problems.append(problem or Problem(ERROR, "cannot read the file", file=str(file)))
        return None
    document, found = _read_document(text, str(file), json_body=False)
    problems.extend(found)
    if document is None:
        return None
    config = _validated(BotConfig, document, str(file), None, problems)
    return config if isinstance(config, BotConfig) and not errors(found) else None


def _read_text(file: Path) -> tuple[str | None, Problem | None]:
    try:
        return file.read_text(encoding="utf-8"), None
    except UnicodeDecodeError as exc:
        return None, Problem(ERROR, f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(file))
    except OSError as exc:
        return None, Problem(ERROR, f"cannot read the file: {exc.strerror or exc}", file=str(file))


def _read_document(text: str, file: str, *, json_body: bool) -> tuple[Document | None, list[Problem]]:
    try:
        document = parse_json(text) if json_body else parse_yaml(text)
    except SourceSyntaxError as exc:
        return None, [Problem(ERROR, exc.message, file=file, line=exc.line)]
    if document.data is None:
        return None, [Problem(ERROR, "the file is empty", file=file, line=1)]
    if not isinstance(document.data, dict):
        data = document.data
        kind = "a list" if isinstance(data, list) else f"{type(data).__name__} {data!r}"
        message = f"expected a mapping of fields, not {kind}"
        return None, [Problem(ERROR, message, file=file, line=document.line(()))]
    problems = []
    for duplicate in document.duplicates:
        if duplicate.path == ("nodes",):
            node: str | None = str(duplicate.key)
            message = f"duplicate node id {duplicate.key!r} (first defined at line {duplicate.first_line})"
        else:
            inside_node = len(duplicate.path) >= 2 and duplicate.path[0] == "nodes"
            node = str(duplicate.path[1]) if inside_node else None
            where = field_label(duplicate.path)
            message = f"duplicate key {duplicate.key!r} (first at line {duplicate.first_line})"
            message = f"{where}: {message}" if where else message
        problems.append(Problem(ERROR, message, file=file, line=duplicate.line, node=node))
    return document, problems


def _validated(
    model: type[BaseModel], document: Document, file: str, skill_id: str | None, problems: list[Problem]
) -> BaseModel | None:
    try:
        return model.model_validate(document.data)
    except ValidationError as exc:
        problems.extend(shape_problems(exc, model, document, file=file, skill=skill_id))
        return None


def _declared_id(data: Any) -> str | None:
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _is_json(filename: str, content_type: str | None) -> bool:
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        return media == "application/json" or media.endswith("+json")
    return filename.lower().endswith(".json")
