"""One conversation test, run through the real service and store.

Customer actions (``start``, ``say``, ``choose``, ``resume``) become turns; expectations look at the last turn
(:mod:`rejoinder.testing.expectations`) or at the conversation as stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from functools import partial
from typing import Any

from rejoinder.credentials import TOKEN_PREFIX
from rejoinder.engine import ConversationState, EngineError, HttpCall
from rejoinder.service import ConversationService, ServiceError, TokenRefused, TurnOutcome
from rejoinder.skills.model import Bot
from rejoinder.store import ConversationRecord, MessageRecord, Store
from rejoinder.testing.expectations import (
    TURN_CHECKS,
    StepFailed,
    Turn,
    as_json,
    check_status,
    check_variables,
)
from rejoinder.testing.fakes import FakeBackend, UnmatchedCall
from rejoinder.testing.match import TOKEN_IN_TEXT
from rejoinder.testing.model import ConversationTest, Start, Step
from rejoinder.testing.results import StepLog

LAST_TOKEN = "last_token"
_USER_AGENT = "rejoinder-test"


class ConversationRun:
    """Runs one test's steps on a conversation; raises :class:`StepFailed` at the first step that fails."""

    def __init__(
        self, store: Store, bot: Bot, test: ConversationTest, fakes: FakeBackend, environ: Mapping[str, str]
    ):
        self.store = store
        self.bot = bot
        self.test = test
        self.fakes = fakes
        self.environ = dict(environ)
        self.service = self._service()
        self.conversation_id: str | None = None
        self.turns: list[Turn] = []
        self.history: list[MessageRecord] = []
        self.log: list[StepLog] = []
        self._actions: dict[str, Callable[[Step], Awaitable[None]]] = {
            "say": self._say,
            "choose": self._choose,
            "resume": self._resume,
            "variables": self._variables,
            "status": self._status,
            "no_errors": self._no_errors,
            **{kind: self._expect for kind in TURN_CHECKS},
        }

    def _service(self) -> ConversationService:
        return ConversationService(self.store, {self.bot.id: self.bot}, http=self.fakes, environ=self.environ)

    async def run(self) -> None:
        try:
            if self.test.start is not None:
                await self._logged(
                    self.test.start.line, _start_label(self.test.start), self._open(self.test.start)
                )
            for step in self.test.steps:
                await self._logged(step.line, _label(step), self._actions[step.kind](step))
            if self.turns:
                self._check_errors_seen(self.turns[-1])
        finally:
            await self.service.aclose()

    async def _logged(self, line: int, label: str, action: Awaitable[None]) -> None:
        turns = len(self.turns)
        try:
            await action
        except StepFailed:
            self.log.append(StepLog(line, label, ok=False))
            raise
        made = self.turns[-1].transcript() if len(self.turns) > turns else []
        self.log.append(StepLog(line, label, ok=True, transcript=made))

    # ------------------------------------------------------------------------------------ customer actions

    async def _open(self, start: Start) -> None:
        await self._turn(
            start.line,
            partial(
                self.service.start,
                self.bot.id,
                event=start.event,
                text=start.text,
                variables=start.variables or None,
                user=start.user or None,
            ),
        )

    async def _say(self, step: Step) -> None:
        text = str(step.say)
        if self.conversation_id is None:
            await self._turn(step.line, partial(self.service.start, self.bot.id, text=text))
        else:
            await self._turn(step.line, partial(self.service.send, self.conversation_id, text=text))

    async def _choose(self, step: Step) -> None:
        wanted = str(step.choose)
        turn = self._last(step)
        choices = (turn.pending or {}).get("choices") or []
        if not choices:
            raise StepFailed(step.line, "the bot is not asking a question with choices", turn.transcript())
        key = wanted.strip().casefold()
        value = next(
            (
                c["value"]
                for c in choices
                if key in (c["label"].strip().casefold(), c["value"].strip().casefold())
            ),
            None,
        )
        if value is None:
            offered = ", ".join(f"{c['label']!r} ({c['value']})" for c in choices)
            raise StepFailed(step.line, f"no choice {wanted!r}; the choices are {offered}", turn.transcript())
        assert self.conversation_id is not None
        await self._turn(step.line, partial(self.service.send, self.conversation_id, choice=value))

    async def _turn(self, line: int, act: Callable[[], Awaitable[TurnOutcome]]) -> None:
        if self.turns:
            self._check_errors_seen(self.turns[-1])
        number = len(self.turns)
        self.fakes.turn = number
        try:
            result = await act()
        except UnmatchedCall as exc:
            raise StepFailed(line, str(exc)) from None
        except (ServiceError, EngineError) as exc:
            raise StepFailed(line, f"the bot refused this: {exc}") from None
        self.conversation_id = result.conversation_id
        self.history += result.messages
        self.turns.append(
            Turn(
                number=number,
                line=line,
                messages=result.messages,
                pending=result.pending,
                status=result.status,
                errors=list(result.errors),
                calls=self.fakes.calls_in_turn(number),
            )
        )

    async def _resume(self, step: Step) -> None:
        """The customer leaves and comes back with a token; a fresh service (nothing in memory) resumes."""
        before = self._last(step)
        self._check_errors_seen(before)
        token = self._sent_token() if step.resume == LAST_TOKEN else str(step.resume)
        if token is None:
            raise StepFailed(
                step.line,
                f"no conversation token ({TOKEN_PREFIX}…) was sent in any Integrate call yet, so "
                "'resume: last_token' has nothing to resume with",
            )
        await self.service.aclose()
        self.service = self._service()
        try:
            resumed = await self.service.resume(
                self.bot.id, token, user_agent=_USER_AGENT, history_limit=max(500, len(self.history))
            )
        except TokenRefused as exc:
            raise StepFailed(step.line, f"the token was refused ({exc.code}): {exc}") from None
        if resumed.conversation_id != self.conversation_id:
            raise StepFailed(
                step.line,
                f"the token resumed conversation {resumed.conversation_id}, "
                f"not this test's {self.conversation_id}",
            )
        difference = _history_difference(self.history, resumed.messages)
        if difference:
            raise StepFailed(step.line, f"the resumed history is not the conversation's: {difference}")
        if resumed.pending != before.pending:
            raise StepFailed(
                step.line,
                f"the resumed conversation waits for {resumed.pending}, but before leaving it waited for "
                f"{before.pending}",
            )
        last_turn = resumed.messages[-1].turn_seq if resumed.messages else None
        self.turns.append(
            Turn(
                number=len(self.turns),
                line=step.line,
                messages=[m for m in resumed.messages if m.turn_seq == last_turn],
                pending=resumed.pending,
                status=resumed.status,
                errors_checked=True,
            )
        )

    def _sent_token(self) -> str | None:
        for recorded in reversed(self.fakes.calls):
            found = [m for text in _strings_of(recorded.call) for m in TOKEN_IN_TEXT.findall(text)]
            if found:
                return found[-1]
        return None

    # ------------------------------------------------------------------------------------ expectations

    async def _expect(self, step: Step) -> None:
        TURN_CHECKS[step.kind](step, self._last(step))

    async def _variables(self, step: Step) -> None:
        turn = self._last(step)
        state = ConversationState.from_json((await self._stored(step)).state)
        check_variables(step, turn, state.variables)

    async def _status(self, step: Step) -> None:
        turn = self._last(step)
        check_status(step, turn, (await self._stored(step)).status)

    async def _no_errors(self, step: Step) -> None:
        self._last(step)
        faults = [(turn, error) for turn in self.turns for error in turn.errors]
        if faults:
            listed = "\n".join(f"  line {turn.line}: {error}" for turn, error in faults)
            raise StepFailed(step.line, f"expected no skill errors, found:\n{listed}")

    # ------------------------------------------------------------------------------------ helpers

    def _last(self, step: Step) -> Turn:
        if not self.turns:
            raise StepFailed(
                step.line, f"'{step.kind}' needs a conversation: open the test with 'start:' or 'say:'"
            )
        return self.turns[-1]

    async def _stored(self, step: Step) -> ConversationRecord:
        assert self.conversation_id is not None
        record = await self.store.conversations.get(self.conversation_id)
        if record is None:
            raise StepFailed(step.line, f"conversation {self.conversation_id} is not in the store")
        return record

    def _check_errors_seen(self, turn: Turn) -> None:
        """Skill errors fail the test at the turn that made them, unless an ``errors:`` step expected them."""
        if turn.errors and not turn.errors_checked and not self.test.expect_errors:
            listed = "\n".join(f"  {error}" for error in turn.errors)
            raise StepFailed(
                turn.line,
                f"the skill reported errors in this turn:\n{listed}\n"
                "(expect them with an 'errors:' step after the turn, or 'expect_errors: true' on the test)",
                turn.transcript(),
            )
        turn.errors_checked = True


def _history_difference(expected: list[MessageRecord], got: list[MessageRecord]) -> str | None:
    """How the history a resume returned differs from the messages the test's turns stored, or None."""

    def key(message: MessageRecord) -> tuple[int, str, str]:
        return message.seq, message.sender, as_json(message.payload)

    wanted, found = [key(m) for m in expected], [key(m) for m in got]
    if wanted == found:
        return None
    for (seq, sender, payload), other in zip(wanted, found, strict=False):
        if (seq, sender, payload) != other:
            return f"message {seq} was {sender} {payload}, the resumed history has {other[1]} {other[2]}"
    return f"{len(wanted)} messages were exchanged, the resumed history has {len(found)}"


def _strings_of(call: HttpCall) -> Iterator[str]:
    yield call.url
    yield from call.query.values()
    yield from call.headers.values()
    if call.content is not None:
        yield call.content
    yield from _strings_in(call.json_body)


def _strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_in(item)


def _start_label(start: Start) -> str:
    return f"start: event {start.event!r}" if start.event is not None else f"start: text {start.text!r}"


def _label(step: Step) -> str:
    value = step.value
    if hasattr(value, "criteria"):
        value = value.criteria()
    return f"{step.kind}: {as_json(value)}"
