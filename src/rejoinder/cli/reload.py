"""``rejoinder serve --reload``: a served bot follows the edits of its skill files, without a restart.

The server keeps running: on a change under ``BOT_DIR/skills/`` the bot directory is read and validated again, and
only a bot without errors replaces the running one, through the skill catalog (which also keeps the new version,
so conversations begun on it can finish after a restart). New conversations start on the new version; those
under way finish on the one they began on, and open connections are not cut. A broken edit is reported on stderr
with its file and line, and the running version stays.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchfiles import Change, awatch

from rejoinder.skills import CONFIG_FILE, Bot, bot_version, check_bot
from rejoinder.skills.loader import SKILL_SUFFIXES, SKILLS_DIR
from rejoinder.skills.problems import errors

if TYPE_CHECKING:
    from fastapi import FastAPI

    from rejoinder.server.skill_catalog import SkillCatalog

# Milliseconds of quiet before a burst of changes (an editor's save) is acted on.
DEBOUNCE_MS = 400


class SkillFileWatcher:
    """Watches the bot directories of one server and reloads a bot whose skill files change."""

    def __init__(self, bot_dirs: Mapping[str, Path], report: Callable[[str], None]) -> None:
        self.bot_dirs = dict(bot_dirs)  # as given, for messages
        self._roots = {bot_id: path.resolve() for bot_id, path in bot_dirs.items()}
        self.report = report

    def watched(self, change: Change, path: str) -> bool:
        """Whether a change to ``path`` may change a bot: its skill files and its settings."""
        file = Path(path)
        if file.name.startswith("."):
            return False
        if file.name == CONFIG_FILE:
            return file.parent in self._roots.values()
        return file.suffix.lower() in SKILL_SUFFIXES and file.parent.name == SKILLS_DIR

    def bots_of(self, changes: set[tuple[Change, str]]) -> list[str]:
        """The bots the changed paths belong to."""
        touched = {Path(path).resolve() for _, path in changes}
        return [
            bot_id
            for bot_id, root in self._roots.items()
            if any(path == root / CONFIG_FILE or path.parent == root / SKILLS_DIR for path in touched)
        ]

    async def run(self, catalog: SkillCatalog, stop: asyncio.Event) -> None:
        """Reload changed bots until ``stop`` is set."""
        async for changes in awatch(
            *self._roots.values(), watch_filter=self.watched, debounce=DEBOUNCE_MS, stop_event=stop
        ):
            for bot_id in self.bots_of(changes):
                try:
                    await self.reload(catalog, bot_id)
                except Exception as exc:  # one failed reload must not end the watching
                    self.report(f"{self.bot_dirs[bot_id]}: not reloaded: {exc}")

    async def reload(self, catalog: SkillCatalog, bot_id: str) -> Bot | None:
        """Load the bot's directory again and run it when it has no errors; the bot now running, or None."""
        root = self.bot_dirs[bot_id]
        loaded, problems = await asyncio.to_thread(check_bot, root)
        # Warnings of a bot that does not load are mostly echoes of its errors: only the errors are shown then.
        for problem in problems if loaded is not None else errors(problems):
            self.report(problem.format(severity=True))
        running = catalog.service.bot(bot_id)
        kept = f"bot {bot_id!r} keeps running version {running.version}"
        if loaded is None:
            self.report(f"{root}: not reloaded, fix the errors above; {kept}")
            return None
        config = catalog.directory_bots[bot_id].config
        if loaded.id != bot_id:
            self.report(f"{root / CONFIG_FILE}: the bot's id changed; restart the server to serve it; {kept}")
            return None
        if loaded.config != config:
            self.report(f"{root / CONFIG_FILE}: changed settings take effect when the server restarts")
        # The settings stay those the server started with: its CORS origins and identity checks are built on them.
        bot = Bot(config=config, skills=loaded.skills, version=bot_version(config, loaded.skills))
        now, problems = await catalog.replace_directory_bot(bot)
        if now is None:
            for problem in problems:
                self.report(problem.format(severity=True))
            self.report(f"{root}: not reloaded, the skills clash with skills uploaded to the server; {kept}")
            return None
        if now.version != running.version:
            self.report(f"{root}: reloaded, bot {bot_id!r} now runs version {now.version}")
        return now


def watch_skill_files(app: FastAPI, watcher: SkillFileWatcher) -> None:
    """Run ``watcher`` for as long as ``app`` serves: started once the app is up, stopped before it shuts down."""
    serving = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with serving(app) as state:
            stop = asyncio.Event()
            task = asyncio.create_task(watcher.run(app.state.skill_catalog, stop))
            try:
                yield state
            finally:
                stop.set()  # the watching thread sees it within a step; a bare cancel would wait for a timeout
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(task, timeout=5)

    app.router.lifespan_context = lifespan
