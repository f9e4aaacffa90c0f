"""Which skills each bot runs: its directory's skills overlaid with every upload and deletion, newest wins.

Every change is validated against the whole bot, stored as a new version of the skill, and makes a new bot
version that the turn service starts new conversations on. Conversations already under way keep the version they
began on. Changes made on another worker are picked up by :meth:`SkillCatalog.follow`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from rejoinder.service import Actor, ConversationService
from rejoinder.skills import ERROR, Bot, SkillSource, read_skill, validate_bot
from rejoinder.skills import Problem as SkillProblem
from rejoinder.skills.loader import bot_version
from rejoinder.skills.problems import errors
from rejoinder.skills.stored import compose
from rejoinder.store import StoreError
from rejoinder.store.bots import (
    Bots,
    SkillChange,
    SkillsChanged,
    SkillVersionRecord,
)

log = logging.getLogger("rejoinder.skills")
T = TypeVar("T")

SYNC_INTERVAL = 2.0  # seconds between checks for skill changes made by other workers
_CHANGE_ATTEMPTS = 5
# Validating a large skill takes seconds of CPU: it runs in worker threads, this many at once per process.
MAX_VALIDATIONS = 2
JSON_MEDIA_TYPE = "application/json"


class CatalogError(Exception):
    """A skill change the catalog refuses."""


class SkillNotFound(CatalogError):
    """The bot has no skill with this id."""


class SkillInUse(CatalogError):
    """Deleting the skill would break the bot (other skills jump to it, say); ``problems`` says how."""

    def __init__(self, skill_id: str, problems: list[SkillProblem]) -> None:
        super().__init__(f"other skills still need {skill_id!r}")
        self.problems = problems


class SkillsBusy(CatalogError):
    """The bot's skills kept changing under the request; send it again."""


@dataclass(frozen=True)
class Upload:
    """What an upload did: the stored version (None when refused), every problem found, whether it replaced one."""

    record: SkillVersionRecord | None
    problems: list[SkillProblem]
    replaced: bool


class SkillCatalog:
    """Keeps the turn service on each bot's newest skills, and records every change as a new version."""

    def __init__(
        self,
        versions: Bots,
        service: ConversationService,
        directory_bots: Mapping[str, Bot],
        clock: Callable[[], datetime],
    ) -> None:
        self.versions = versions
        self.service = service
        self.directory_bots = dict(directory_bots)
        self.clock = clock
        self._heads: dict[str, int] = {}
        self._validations = asyncio.Semaphore(MAX_VALIDATIONS)

    async def off_loop(self, work: Callable[[], T]) -> T:
        """Runs parsing or validation in a worker thread, so the event loop keeps answering meanwhile."""
        async with self._validations:
            return await asyncio.to_thread(work)

    async def sync(self, bot_id: str) -> Bot:
        """The bot's newest version, loaded into the service when it changed (here or on another worker)."""
        head, changes = await self.versions.current(bot_id)
        if head == self._heads.get(bot_id):
            return self.service.bot(bot_id)
        return await self._compose(bot_id, head, changes)

    async def replace_directory_bot(self, bot: Bot) -> tuple[Bot | None, list[SkillProblem]]:
        """Run ``bot``, the bot's directory read again, under the bot's uploads and deletions from now on.

        The result is validated as a whole first: with errors nothing changes, and the problems come back.
        """
        _, changes = await self.versions.current(bot.id)
        candidate = compose(bot, _definitions(changes))
        problems = await self.off_loop(lambda: validate_bot(candidate))
        if errors(problems):
            return None, problems
        self.directory_bots[bot.id] = bot
        head, changes = await self.versions.current(bot.id)  # read again: an upload may have landed meanwhile
        return await self._compose(bot.id, head, changes), problems

    async def _compose(self, bot_id: str, head: int, changes: Mapping[str, SkillVersionRecord]) -> Bot:
        bot = compose(self.directory_bots[bot_id], _definitions(changes))
        await self.versions.save_bot(bot, self.clock())
        self._install(bot, head)
        return bot

    async def follow(self, interval: float) -> None:
        """Apply changes made by other workers, checking every ``interval`` seconds."""
        while True:
            await asyncio.sleep(interval)
            try:
                heads = await self.versions.heads()
                for bot_id in self.directory_bots:
                    if heads.get(bot_id, 0) != self._heads.get(bot_id):
                        await self.sync(bot_id)
            except StoreError as error:
                log.warning("cannot check for skill changes: %s", error)
            except Exception:
                log.exception("checking for skill changes failed")

    async def check(self, bot_id: str, text: str, media_type: str) -> list[SkillProblem]:
        """Every problem the upload of ``text`` would meet; nothing is stored."""
        source, problems = await self.off_loop(lambda: _parse(None, text, media_type))
        if source is None:
            return problems
        base = await self.sync(bot_id)
        _, problems = await self.off_loop(lambda: _with_skill(base, source, problems))
        return problems

    async def upload(
        self, bot_id: str, skill_id: str | None, text: str, media_type: str, actor: Actor
    ) -> Upload:
        """Store ``text`` as the skill's next version, unless it has errors; audited as ``actor``'s change.

        ``skill_id`` None takes the skill's own ``id``; otherwise the two must be the same.
        """
        parsed, problems = await self.off_loop(lambda: _parse(skill_id, text, media_type))
        if parsed is None:
            return Upload(None, problems, replaced=False)
        source = parsed
        found: list[SkillProblem] = problems
        uploaded = source.skill.id

        def add(base: Bot) -> SkillChange | None:
            nonlocal found
            candidate, found = _with_skill(base, source, problems)
            if candidate is None:
                return None
            # The store adds the skill, its version and the bot version to the event.
            audit = actor.audit("skill_uploaded", bot_id, self.clock())
            return SkillChange(candidate, uploaded, source.skill, text, media_type, actor.key_id, audit)

        record, base = await self._change(bot_id, add)
        return Upload(record, found, replaced=record is not None and uploaded in base.skills)

    async def delete(self, bot_id: str, skill_id: str, actor: Actor) -> SkillVersionRecord:
        """Record the skill's deletion, unless other skills still need it; audited as ``actor``'s change."""

        def remove(base: Bot) -> SkillChange:
            if skill_id not in base.skills:
                raise SkillNotFound(skill_id)
            skills = {key: skill for key, skill in base.skills.items() if key != skill_id}
            candidate = Bot(config=base.config, skills=skills, version=bot_version(base.config, skills))
            problems = errors(validate_bot(candidate))
            if problems:
                raise SkillInUse(skill_id, problems)
            audit = actor.audit("skill_deleted", bot_id, self.clock())
            return SkillChange(candidate, skill_id, None, changed_by=actor.key_id, audit=audit)

        record, _ = await self._change(bot_id, remove)
        assert record is not None
        return record

    async def _change(
        self, bot_id: str, make: Callable[[Bot], SkillChange | None]
    ) -> tuple[SkillVersionRecord | None, Bot]:
        """Apply ``make`` to the newest bot and record its change; redo both if another change landed first."""
        for _attempt in range(_CHANGE_ATTEMPTS):
            base = await self.sync(bot_id)
            change = await self.off_loop(functools.partial(make, base))
            if change is None:
                return None, base
            try:
                record = await self.versions.record(
                    change, expected_head=self._heads[bot_id], now=self.clock()
                )
            except SkillsChanged:
                continue
            self._install(change.bot, record.id)
            return record, base
        raise SkillsBusy("the bot's skills changed at the same moment")

    def _install(self, bot: Bot, head: int) -> None:
        self._heads[bot.id] = head
        if self.service.bot(bot.id).version != bot.version:
            log.info("bot %s now runs version %s", bot.id, bot.version)
            self.service.add_bot(bot)


def _definitions(changes: Mapping[str, SkillVersionRecord]) -> dict[str, dict[str, Any] | None]:
    return {skill_id: change.definition for skill_id, change in changes.items()}


def _parse(skill_id: str | None, text: str, media_type: str) -> tuple[SkillSource | None, list[SkillProblem]]:
    """Read one skill; with ``skill_id``, its ``id`` must be that one."""
    filename = f"{skill_id or 'skill'}.{'json' if media_type == JSON_MEDIA_TYPE else 'yaml'}"
    source, problems = read_skill(text, filename=filename, content_type=media_type)
    if source is not None and skill_id is not None and source.skill.id != skill_id:
        message = (
            f"id: the skill's id is {source.skill.id!r} but the URL names {skill_id!r}; make them the same"
        )
        mismatch = SkillProblem(
            ERROR, message, file=filename, line=source.line(("id",)), skill=source.skill.id
        )
        return None, [*problems, mismatch]
    return source, problems


def _with_skill(
    base: Bot, source: SkillSource, problems: list[SkillProblem]
) -> tuple[Bot | None, list[SkillProblem]]:
    """``base`` with the skill added or replaced, checked as a whole bot; None when there are errors."""
    skills = {**base.skills, source.skill.id: source.skill}
    candidate = Bot(config=base.config, skills=skills, version=bot_version(base.config, skills))
    problems = problems + validate_bot(candidate, {source.skill.id: source})
    return (None if errors(problems) else candidate), problems
