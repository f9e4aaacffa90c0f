"""Running test files: load each file and its bot once, run the selected tests on one temporary store."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rejoinder.skills import CONFIG_FILE, BotLoadError, load_bot
from rejoinder.skills.model import Bot
from rejoinder.store import Store
from rejoinder.testing.fakes import FakeBackend
from rejoinder.testing.loader import (
    NoTestsFound,
    TestFileError,
    bot_dir_of,
    find_test_files,
    load_test_file,
)
from rejoinder.testing.model import ConversationTest, ConversationTestFile
from rejoinder.testing.results import CaseResult, Failure, RunSummary
from rejoinder.testing.session import ConversationRun, StepFailed

# Integrate calls never leave the process in tests, so a bot that signs them gets a stand-in secret.
PLACEHOLDER_SIGNING_SECRET = "rejoinder-test-signing-secret"


@dataclass
class _Planned:
    """A test file as loaded: its tests to run, or why it cannot run."""

    path: Path
    model: ConversationTestFile | None
    tests: list[ConversationTest]
    error: Failure | None = None

    @property
    def shown(self) -> str:
        return str(self.path)


async def run_tests(
    paths: Sequence[Path],
    *,
    select: str | None = None,
    database_url: str | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
) -> RunSummary:
    """Run the conversation tests in ``paths`` (files, bot directories, or directories holding bots).

    ``select`` keeps the tests whose name contains it (case ignored). Every test runs on one store: a fresh
    SQLite file in a temporary directory unless ``database_url`` names another. A file that does not load
    counts as one failed test. Raises :class:`NoTestsFound` when the paths hold no tests or none is selected.
    """
    planned = [_plan(path, select) for path in find_test_files(paths)]
    if not any(plan.tests or plan.error for plan in planned):
        raise NoTestsFound(f"no test name contains {select!r}" if select else "the test files hold no tests")
    summary = RunSummary()

    def report(result: CaseResult) -> None:
        summary.results.append(result)
        if on_result is not None:
            on_result(result)

    with tempfile.TemporaryDirectory(prefix="rejoinder-test-") as scratch:
        store = Store.from_url(database_url or f"sqlite:///{Path(scratch) / 'conversations.db'}")
        try:
            await store.upgrade()
            bots: dict[Path, Bot | BotLoadError] = {}
            for plan in planned:
                for result in await _run_file(plan, store, bots):
                    report(result)
        finally:
            await store.close()
    return summary


def _plan(path: Path, select: str | None) -> _Planned:
    try:
        model = load_test_file(path)
    except TestFileError as exc:
        return _Planned(path, None, [], Failure(None, f"the test file does not load:\n{exc}"))
    wanted = select.casefold() if select else None
    tests = [test for test in model.tests if wanted is None or wanted in test.name.casefold()]
    return _Planned(path, model, tests)


async def _run_file(plan: _Planned, store: Store, bots: dict[Path, Bot | BotLoadError]) -> list[CaseResult]:
    if plan.error is not None or plan.model is None:
        return [CaseResult(plan.shown, None, plan.error)]
    if not plan.tests:
        return []
    model = plan.model
    bot_dir = bot_dir_of(plan.path, model)
    if model.bot is None and not (bot_dir / CONFIG_FILE).is_file():
        message = (
            f"{plan.shown}: no bot to test: {bot_dir} has no {CONFIG_FILE} "
            "(keep test files in BOT_DIR/tests/, or name the bot with 'bot: PATH')"
        )
        return [CaseResult(plan.shown, None, Failure(None, message))]
    if bot_dir not in bots:
        try:
            bots[bot_dir] = load_bot(bot_dir)
        except BotLoadError as exc:
            bots[bot_dir] = exc
    bot = bots[bot_dir]
    if isinstance(bot, BotLoadError):
        failure = Failure(None, f"the bot does not load, so no test of it can run:\n{bot}")
        return [CaseResult(plan.shown, test.name, failure) for test in plan.tests]
    refused = [name for name in model.env if name not in _env_names(bot)]
    if refused:
        allowed = ", ".join(sorted(_env_names(bot))) or "none"
        message = "\n".join(
            f"{plan.shown}:{model.env_line(name)}: env.{name}: the bot does not allow this variable "
            f"(its rejoinder.yaml allows: {allowed})"
            for name in refused
        )
        return [CaseResult(plan.shown, None, Failure(None, message))]
    return [await _run_test(plan, test, bot, store) for test in plan.tests]


async def _run_test(plan: _Planned, test: ConversationTest, bot: Bot, store: Store) -> CaseResult:
    assert plan.model is not None
    fakes = FakeBackend([*test.http, *plan.model.http], shown=plan.shown)
    run: ConversationRun | None = None
    try:
        run = ConversationRun(store, bot, test, fakes, _environment(bot, plan.model))
        await run.run()
    except StepFailed as failed:
        failure = Failure(failed.line, failed.message, failed.transcript)
    except Exception as exc:  # a fault of the platform itself: report it here and go on with the others
        failure = Failure(test.line, f"the test could not run: {type(exc).__name__}: {exc}")
    else:
        return CaseResult(plan.shown, test.name, None, run.log)
    return CaseResult(plan.shown, test.name, failure, run.log if run is not None else [])


def _env_names(bot: Bot) -> set[str]:
    names = set(bot.config.env)
    if bot.config.integrate.signing_secret_env:
        names.add(bot.config.integrate.signing_secret_env)
    return names


def _environment(bot: Bot, model: ConversationTestFile) -> dict[str, str]:
    """What the file declares (the process environment stays out), plus a signing secret if one is needed."""
    environ = dict(model.env)
    signing = bot.config.integrate.signing_secret_env
    if signing and not environ.get(signing):
        environ[signing] = PLACEHOLDER_SIGNING_SECRET
    return environ
