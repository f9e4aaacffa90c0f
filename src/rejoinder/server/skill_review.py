"""What the console shows of a bot's skills: the list with each skill's last change, how many conversations run on
each bot version, a skill's versions, its source with line numbers, its graph, and the difference of two versions.

Everything is read through the :class:`~rejoinder.server.skill_catalog.SkillCatalog`; parsing, drawing and diffing
run in its worker threads (a stored skill may be 256 KB), and what a stored version gives is kept for reuse.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from rejoinder.server.skill_catalog import JSON_MEDIA_TYPE, SkillCatalog, SkillNotFound
from rejoinder.skills import Problem, read_skill
from rejoinder.skills.model import Skill
from rejoinder.skills.svg import TooLargeToDraw, skill_svg
from rejoinder.store.bots import SkillChangeSummary, SkillVersionRecord

MAX_DIFF_LINES = 4000  # lines of a difference shown; the rest is cut (both sources are whole in the history)
MAX_DIFFED_LINES = (
    20_000  # a source longer than this is not compared line by line (difflib's cost grows fast)
)
MAX_HISTORY = 100  # versions of a skill listed, newest first
MAX_VERSION_COUNTS = 50  # bot versions listed with their conversations, most used first
_KEPT_VIEWS = 64  # parsed sources kept, least recently used dropped

# Where a node of the graph links: (node id, its line or None) -> URL, or None for no link.
NodeLink = Callable[[str, int | None], str | None]


class VersionNotFound(SkillNotFound):
    """The skill has no such stored version (or it is a deletion, which has no source)."""


@dataclass(frozen=True)
class SkillRow:
    """A skill of the bot as it runs now, and its last change (None for a skill from the bot's directory)."""

    id: str
    name: str | None
    description: str | None
    nodes: int
    version: int | None
    changed_at: datetime | None
    changed_by: str | None


@dataclass(frozen=True)
class VersionCount:
    """How many conversations began on a bot version, and how many of them are still open."""

    bot_version: str
    conversations: int
    active: int
    newest: bool


@dataclass(frozen=True)
class SkillsOverview:
    bot_id: str
    bot_version: str
    skills: list[SkillRow]
    versions: list[VersionCount]


@dataclass(frozen=True)
class SourceView:
    """A skill's text, numbered from 1; ``version`` None is the skill as the bot's directory gave it."""

    skill_id: str
    version: int | None
    media_type: str
    lines: list[str]


@dataclass(frozen=True)
class SkillView:
    row: SkillRow
    history: list[SkillChangeSummary]  # newest first, at most MAX_HISTORY
    graph: str | None  # an <svg> element, whose nodes link to their source lines
    graph_note: str | None  # why there is no graph


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "hunk", "added", "removed" or "same"
    text: str
    old: int | None  # its line in the older version
    new: int | None  # its line in the newer version


@dataclass(frozen=True)
class VersionDiff:
    skill_id: str
    old: int
    new: int
    lines: list[DiffLine]
    truncated: bool
    note: str | None  # why there is no line-by-line difference


@dataclass(frozen=True)
class _StoredText:
    text: str
    media_type: str | None


@dataclass(frozen=True)
class _Parsed:
    """A source as the console shows it: the text's lines and the line of each node."""

    lines: list[str]
    node_lines: dict[str, int]


class SkillReview:
    """The console's reads of a bot's skills, over the skill catalog."""

    def __init__(self, catalog: SkillCatalog) -> None:
        self.catalog = catalog
        self._parsed: OrderedDict[tuple[Any, ...], _Parsed] = OrderedDict()

    async def overview(self, bot_id: str) -> SkillsOverview:
        bot = await self.catalog.sync(bot_id)
        _, changes = await self.catalog.versions.current(bot_id)
        counts = await self.catalog.versions.conversations_per_version(bot_id, limit=MAX_VERSION_COUNTS)
        return SkillsOverview(
            bot_id=bot_id,
            bot_version=bot.version,
            skills=[_row(bot.skills[skill_id], changes.get(skill_id)) for skill_id in sorted(bot.skills)],
            versions=[
                VersionCount(version, total, active, version == bot.version)
                for version, total, active in counts
            ],
        )

    async def skill(self, bot_id: str, skill_id: str, link: NodeLink) -> SkillView:
        """The skill as it runs now, its newest versions and its graph; ``link(node_id, line)`` is where a node
        links."""
        bot = await self.catalog.sync(bot_id)
        skill = bot.skills.get(skill_id)
        if skill is None:
            raise SkillNotFound(skill_id)
        history = await self.catalog.versions.changes(bot_id, skill_id, limit=MAX_HISTORY)
        current = await self._newest(bot_id, skill_id, history)
        parsed = await self._parse(bot_id, skill, current)
        graph: str | None = None
        note: str | None = None
        try:
            graph = await self.catalog.off_loop(
                lambda: skill_svg(
                    skill, lambda node_id: link(node_id, parsed.node_lines.get(node_id)), name=f"g-{skill_id}"
                )
            )
        except TooLargeToDraw as too_large:
            note = f"Not drawn: {too_large}."
        return SkillView(_row(skill, history[0] if history else None), history, graph, note)

    async def source(self, bot_id: str, skill_id: str, version: int | None) -> SourceView:
        """The text of a stored version, or (``version`` None) of the skill as it runs now."""
        if version is None:
            bot = await self.catalog.sync(bot_id)
            skill = bot.skills.get(skill_id)
            if skill is None:
                raise SkillNotFound(skill_id)
            history = await self.catalog.versions.changes(bot_id, skill_id, limit=1)
            current = await self._newest(bot_id, skill_id, history)
            if current is not None:
                return await self.source(bot_id, skill_id, current.version)
            parsed = await self._parse(bot_id, skill, None)
            return SourceView(skill_id, None, "application/yaml", parsed.lines)
        record = await self._stored(bot_id, skill_id, version)
        return SourceView(
            skill_id, version, record.media_type or "application/yaml", record.text.splitlines()
        )

    async def diff(self, bot_id: str, skill_id: str, old: int, new: int) -> VersionDiff:
        """The unified difference of two stored versions' texts (at most :data:`MAX_DIFF_LINES` lines)."""
        before = await self._stored(bot_id, skill_id, old)
        after = await self._stored(bot_id, skill_id, new)
        old_lines, new_lines = before.text.splitlines(), after.text.splitlines()
        if max(len(old_lines), len(new_lines)) > MAX_DIFFED_LINES:
            note = f"These versions are longer than {MAX_DIFFED_LINES} lines: compare them with the source views."
            return VersionDiff(skill_id, old, new, [], truncated=False, note=note)
        lines, truncated = await self.catalog.off_loop(lambda: _unified(old_lines, new_lines))
        return VersionDiff(skill_id, old, new, lines, truncated, None)

    async def _newest(
        self, bot_id: str, skill_id: str, history: list[SkillChangeSummary]
    ) -> SkillVersionRecord | None:
        """The newest stored version when it is an upload (None when the skill has none, or was deleted)."""
        if not history or history[0].deleted:
            return None
        return await self.catalog.versions.version(bot_id, skill_id, history[0].version)

    async def _stored(self, bot_id: str, skill_id: str, version: int) -> _StoredText:
        record = await self.catalog.versions.version(bot_id, skill_id, version)
        if record is None or record.source is None:
            raise VersionNotFound(f"skill {skill_id!r} has no stored version {version}")
        return _StoredText(record.source, record.media_type)

    async def _parse(self, bot_id: str, skill: Skill, record: SkillVersionRecord | None) -> _Parsed:
        key: tuple[Any, ...] = (
            ("stored", record.id) if record is not None else ("directory", bot_id, skill.id, id(skill))
        )
        found = self._parsed.get(key)
        if found is not None:
            self._parsed.move_to_end(key)
            return found
        text = record.source if record is not None and record.source is not None else _as_yaml(skill)
        media_type = record.media_type if record is not None and record.media_type else "application/yaml"
        parsed = await self.catalog.off_loop(lambda: _parsed(text, media_type, skill))
        self._parsed[key] = parsed
        while len(self._parsed) > _KEPT_VIEWS:
            self._parsed.popitem(last=False)
        return parsed


def _row(skill: Skill, change: SkillVersionRecord | SkillChangeSummary | None) -> SkillRow:
    return SkillRow(
        id=skill.id,
        name=skill.name,
        description=skill.description,
        nodes=len(skill.nodes),
        version=change.version if change is not None else None,
        changed_at=change.created_at if change is not None else None,
        changed_by=change.changed_by if change is not None else None,
    )


def _as_yaml(skill: Skill) -> str:
    """A skill from the bot's directory, written out as YAML (the directory's own file is not kept)."""
    data = skill.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    data = {"id": skill.id, **data}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _parsed(text: str, media_type: str, skill: Skill) -> _Parsed:
    filename = "skill.json" if media_type == JSON_MEDIA_TYPE else "skill.yaml"
    source, _problems = read_skill(text, filename=filename, content_type=media_type)
    node_lines: dict[str, int] = {}
    if source is not None:
        for node_id in skill.nodes:
            line = source.line(("nodes", node_id))
            if line is not None:
                node_lines[node_id] = line
    return _Parsed(text.splitlines(), node_lines)


def _unified(old: list[str], new: list[str]) -> tuple[list[DiffLine], bool]:
    lines: list[DiffLine] = []
    old_line = new_line = 0
    for text in difflib.unified_diff(old, new, lineterm="", n=3):
        if len(lines) >= MAX_DIFF_LINES:
            return lines, True
        if text.startswith(("---", "+++")) and not lines:
            continue
        if text.startswith("@@"):
            # "@@ -a,b +c,d @@": where the next lines start in each version
            ranges = text.split()
            old_line = int(ranges[1][1:].split(",")[0])
            new_line = int(ranges[2][1:].split(",")[0])
            lines.append(DiffLine("hunk", text, None, None))
        elif text.startswith("+"):
            lines.append(DiffLine("added", text[1:], None, new_line))
            new_line += 1
        elif text.startswith("-"):
            lines.append(DiffLine("removed", text[1:], old_line, None))
            old_line += 1
        else:
            lines.append(DiffLine("same", text[1:], old_line, new_line))
            old_line += 1
            new_line += 1
    return lines, False


def problems_by_line(problems: list[Problem]) -> tuple[dict[int, list[Problem]], list[Problem]]:
    """Problems at their lines, and those that name no line."""
    at: dict[int, list[Problem]] = {}
    loose: list[Problem] = []
    for problem in problems:
        if problem.line is None:
            loose.append(problem)
        else:
            at.setdefault(problem.line, []).append(problem)
    return at, loose
