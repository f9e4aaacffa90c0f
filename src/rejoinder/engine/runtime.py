"""The sans-I/O skill runtime.

:meth:`Engine.step` takes a conversation state and one input and walks the skill until the bot must wait: for the
customer (a question), for the outside world (an Integrate call the shell performs), or because the skill ended.
It never touches a socket, a file or a database; randomness and time come in through :class:`TurnContext`.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from rejoinder.engine.types import (
    BUILTIN_NAMES,
    BotMessage,
    CloseConversation,
    ConversationState,
    CustomerChoice,
    CustomerText,
    HandledFault,
    HttpCall,
    HttpResponse,
    Input,
    IssueToken,
    Pending,
    SkillError,
    StartEvent,
    StepResult,
    TurnContext,
)
from rejoinder.expr import ExpressionError, Expressions
from rejoinder.expr.budget import DEFAULT_TIME_BUDGET
from rejoinder.expr.functions import drawing_from
from rejoinder.expr.jsonpath import InvalidPath, PathNotFound, lookup
from rejoinder.expr.patterns import fullmatch
from rejoinder.skills.model import (
    AssignNode,
    Bot,
    ConditionNode,
    EndNode,
    IntegrateNode,
    JumpNode,
    MessageNode,
    QuestionNode,
    RegexInput,
    Skill,
    parse_duration,
)
from rejoinder.tokens import TokenRef, mint, referenced_ids

DEFAULT_STEP_BUDGET = 1000
FALLBACK_REPLY = "Sorry, something went wrong on my side. Please try again in a moment."
NO_SKILL_REPLY = "Sorry, I can't answer messages here yet."

_EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"  # run by RE2, so linear in the answer's length
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)$")


class EngineError(Exception):
    """An input the conversation cannot take in its current state (the shell answers it as a client error)."""

    code = "invalid_input"


class UnknownEvent(EngineError):
    code = "unknown_event"


class ConversationClosed(EngineError):
    code = "conversation_closed"


class InvalidChoice(EngineError):
    code = "invalid_choice"


class VariableNotSettable(EngineError):
    code = "variable_not_settable"


class _SkillFault(Exception):
    """A bot designer's mistake met at run time (bad expression, missing node…); ends the skill, never the process.

    ``kind`` names the mistake without quoting any value (see :class:`SkillError`).
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class Engine:
    """Runs one bot's skills. Cheap to keep for the bot's lifetime; holds no per-conversation data."""

    def __init__(
        self,
        bot: Bot,
        expressions: Expressions | None = None,
        *,
        step_budget: int = DEFAULT_STEP_BUDGET,
        time_budget: float = DEFAULT_TIME_BUDGET,
    ):
        self.bot = bot
        self.expressions = expressions or Expressions()
        self.step_budget = step_budget
        self.time_budget = time_budget  # seconds the expressions of one turn may take
        self._settable = {
            name for skill in bot.skills.values() for name, decl in skill.variables.items() if decl.settable
        }
        self._handlers: dict[type, Callable[[_Turn, Any], str | None]] = {
            MessageNode: self._message,
            QuestionNode: self._question,
            AssignNode: self._assign,
            IntegrateNode: self._integrate,
            ConditionNode: self._condition,
            JumpNode: self._jump,
            EndNode: self._end,
        }

    # ------------------------------------------------------------------------------------ entry point

    def step(self, state: ConversationState, event: Input, ctx: TurnContext) -> StepResult:
        """Feed one input; return what the bot said, the new state, effects, and what it waits for."""
        turn = _Turn(self, state.copy(), ctx)
        if turn.state.status == "closed" and not isinstance(event, HttpResponse):
            raise ConversationClosed("this conversation is closed")
        # One step budget, one deadline and one source of randomness for the whole turn.
        with self.expressions.turn(self.time_budget, ctx.random):
            if isinstance(event, StartEvent):
                self._start_event(turn, event)
            elif isinstance(event, CustomerText | CustomerChoice):
                self._customer(turn, event)
            elif isinstance(event, HttpResponse):
                self._http_response(turn, event)
            else:  # pragma: no cover - the Input union is closed
                raise EngineError(f"unknown input {event!r}")
        return turn.finish()

    def pending(self, state: ConversationState) -> Pending | None:
        """What a stored conversation waits for (for resume and history answers).

        None also when this bot no longer has the question (a conversation from a version that was not kept).
        """
        if state.waiting != "customer" or state.skill_id is None or state.node_id is None:
            return None
        skill = self.bot.skills.get(state.skill_id)
        node = skill.nodes.get(state.node_id) if skill is not None else None
        return _pending_for(state.node_id, node) if isinstance(node, QuestionNode) else None

    def check_settable(self, variables: Mapping[str, Any]) -> None:
        """Refuse variables a customer may not pre-set (only those declared ``settable: true``)."""
        refused = sorted(set(variables) - self._settable)
        if refused:
            allowed = ", ".join(sorted(self._settable)) or "none"
            raise VariableNotSettable(f"variables {', '.join(refused)} cannot be set (settable: {allowed})")

    # ------------------------------------------------------------------------------------ inputs

    def _start_event(self, turn: _Turn, event: StartEvent) -> None:
        skill = self.bot.event_skill(event.name)
        if skill is None:
            known = sorted({e for s in self.bot.skills.values() for e in s.triggers.events})
            raise UnknownEvent(
                f"no skill is triggered by event {event.name!r} (known events: {', '.join(known)})"
            )
        self.check_settable(event.variables)
        turn.state.variables.update(event.variables)
        turn.run_skill(skill, skill.start)

    def _customer(self, turn: _Turn, event: CustomerText | CustomerChoice) -> None:
        state = turn.state
        if state.waiting == "http":
            raise EngineError("the bot is still waiting for an outside call; send the message again")
        if state.waiting != "customer" or state.skill_id is None or state.node_id is None:
            if isinstance(event, CustomerChoice):
                raise InvalidChoice("no question is waiting for a choice")
            skill = self.bot.default_skill()
            if skill is None:
                turn.say(NO_SKILL_REPLY, sender="system")
                return
            turn.run_skill(skill, skill.start)
            return
        skill = self.bot.skills[state.skill_id]
        node = skill.nodes[state.node_id]
        assert isinstance(node, QuestionNode)
        turn.skill = skill
        turn.resume_at(self._answer(turn, state.node_id, node, event))

    def _http_response(self, turn: _Turn, response: HttpResponse) -> None:
        state = turn.state
        if state.waiting != "http" or state.skill_id is None or state.node_id is None:
            raise EngineError("no outside call is outstanding")
        skill = self.bot.skills[state.skill_id]
        node = skill.nodes[state.node_id]
        assert isinstance(node, IntegrateNode)
        turn.skill = skill
        state.waiting = "nothing"
        if node.save_status:
            turn.set_variable(node.save_status, response.status)
        if response.ok:
            for path, variable in node.save.items():
                try:
                    turn.set_variable(variable, lookup(response.body, path))
                except PathNotFound:
                    turn.set_variable(variable, None)
                except InvalidPath as exc:
                    turn.errors.append(
                        SkillError(
                            f"node {state.node_id!r}: save path {path!r}: {exc}",
                            kind="save_path",
                            node=state.node_id,
                        )
                    )
                    turn.set_variable(variable, None)
            turn.resume_at(node.next)
            return
        reason = response.error or (
            f"status {response.status}" if response.status is not None else "no response"
        )
        fault = SkillError(
            f"node {state.node_id!r}: outside call failed: {reason}",
            kind="outside_call_failed",
            node=state.node_id,
        )
        if node.on_error:
            turn.errors.append(HandledFault(fault, kind=fault.kind, node=fault.node))
            turn.resume_at(node.on_error)
        else:
            turn.errors.append(fault)
            turn.say(FALLBACK_REPLY, sender="system")
            turn.end_skill()

    # ------------------------------------------------------------------------------------ answers

    def _answer(
        self, turn: _Turn, node_id: str, node: QuestionNode, event: CustomerText | CustomerChoice
    ) -> str | None:
        """Check the customer's answer; return the node to go to, or None after re-asking."""
        if node.choices:
            wanted = event.value if isinstance(event, CustomerChoice) else event.text
            key = wanted.strip().casefold()
            for choice in node.choices:
                if key in (choice.label.strip().casefold(), choice.effective_value.strip().casefold()):
                    turn.save_answer(node, choice.effective_value)
                    return choice.next or node.next
            if isinstance(event, CustomerChoice):
                raise InvalidChoice(f"{event.value!r} is not one of this question's choices")
            if node.else_:
                turn.save_answer(node, event.text)
                return node.else_
            return self._reask(turn, node_id, node)
        if isinstance(event, CustomerChoice):
            raise InvalidChoice("this question takes text, not a choice")
        value = _parse_input(node, event.text)
        if value is _INVALID:
            return self._reask(turn, node_id, node)
        turn.save_answer(node, value)
        return node.next

    def _reask(self, turn: _Turn, node_id: str, node: QuestionNode) -> str | None:
        state = turn.state
        state.retries += 1
        if node.max_retries is not None and state.retries > node.max_retries:
            state.retries = 0
            state.waiting = "nothing"
            if node.on_invalid:
                return node.on_invalid
            turn.end_skill()
            return None
        turn.say(turn.render(node.retry_text or node.text))
        turn.wait_for_customer(node_id, node, prompt=False)
        return None

    # ------------------------------------------------------------------------------------ nodes

    def _message(self, turn: _Turn, node: MessageNode) -> str | None:
        texts = [node.text] if node.text is not None else list(node.messages or [])
        for i, text in enumerate(texts):
            last = i == len(texts) - 1
            turn.say(turn.render(text), buttons=turn.buttons(node.buttons) if last else None)
        return node.next

    def _question(self, turn: _Turn, node: QuestionNode) -> str | None:
        turn.wait_for_customer(turn.node_id, node, prompt=True)
        return None

    def _assign(self, turn: _Turn, node: AssignNode) -> str | None:
        for name, value in node.set.items():
            turn.set_variable(name, turn.evaluate(value) if isinstance(value, str) else value)
        return node.next

    def _integrate(self, turn: _Turn, node: IntegrateNode) -> str | None:
        try:
            call = HttpCall(
                node_id=turn.node_id,
                method=node.method,
                url=turn.render(node.url),
                headers={k: turn.render(v) for k, v in node.headers.items()},
                query={k: turn.render(v) for k, v in node.query.items()},
                json_body=self._json_body(turn, node),
                content=turn.render(node.body) if isinstance(node.body, str) else None,
                timeout=node.timeout or self.bot.config.integrate.timeout,
                retries=node.retries,
                token_secrets=dict(turn.ctx.token_secrets),
            )
        except _SkillFault as fault:
            if node.on_error is None:
                raise
            turn.errors.append(HandledFault(str(fault), kind=fault.kind, node=turn.node_id))
            return node.on_error
        stale = _referenced_tokens(call) - call.token_secrets.keys()
        if stale:
            # Sent as the bare reference: only the turn that minted a token knows its secret.
            turn.errors.append(
                f"node {turn.node_id!r}: the call refers to token {', '.join(sorted(stale))}, which this turn "
                "did not make, so it carries the bare reference: a token's secret is known only in the turn "
                "that calls generate_token()"
            )
        turn.state.waiting = "http"
        turn.state.node_id = turn.node_id
        turn.http_call = call
        return None

    def _json_body(self, turn: _Turn, node: IntegrateNode) -> Any:
        if node.send is not None:
            return {name: turn.state.variables.get(name) for name in node.send}
        if isinstance(node.body, dict | list):
            return turn.render_tree(node.body)
        return None

    def _condition(self, turn: _Turn, node: ConditionNode) -> str | None:
        for branch in node.branches:
            if turn.evaluate(branch.if_):
                return branch.next
        return node.else_

    def _jump(self, turn: _Turn, node: JumpNode) -> str | None:
        if node.skill is None:
            return node.to
        target = self.bot.skills.get(node.skill)
        if target is None:
            raise _SkillFault(f"jump to unknown skill {node.skill!r}", "unknown_skill")
        turn.enter(target)
        return node.node or target.start

    def _end(self, turn: _Turn, node: EndNode) -> str | None:
        if node.text is not None:
            turn.say(turn.render(node.text))
        turn.end_skill()
        if node.close:
            turn.state.status = "closed"
            turn.effects.append(CloseConversation())
        return None


_INVALID = object()


def _parse_input(node: QuestionNode, text: str) -> Any:
    answer = text.strip()
    kind = node.input
    if isinstance(kind, RegexInput):
        return answer if fullmatch(kind.regex, answer) else _INVALID
    if kind == "number":
        if not _NUMBER.match(answer):
            return _INVALID
        number = float(answer.replace(",", "."))
        return int(number) if number.is_integer() and "." not in answer and "," not in answer else number
    if kind == "email":
        return answer if fullmatch(_EMAIL, answer) else _INVALID
    return answer if answer else _INVALID


def _referenced_tokens(call: HttpCall) -> set[str]:
    texts = [call.url, call.content or "", *call.headers.values(), *call.query.keys(), *call.query.values()]
    if call.json_body is not None:
        # A body that is not JSON is refused by the client with its own message.
        with contextlib.suppress(TypeError, ValueError, RecursionError):
            texts.append(json.dumps(call.json_body, default=str))
    return {token_id for text in texts for token_id in referenced_ids(text)}


def _pending_for(node_id: str, node: QuestionNode) -> Pending:
    choices = None
    if node.choices:
        choices = [{"label": c.label, "value": c.effective_value} for c in node.choices]
    return Pending(node=node_id, input="choice" if choices else node.input_name, choices=choices)


class _Turn:
    """The working state of one :meth:`Engine.step` call."""

    def __init__(self, engine: Engine, state: ConversationState, ctx: TurnContext):
        self.engine = engine
        self.state = state
        self.ctx = ctx
        self.messages: list[BotMessage] = []
        self.effects: list[Any] = []
        self.errors: list[str] = []
        self.http_call: HttpCall | None = None
        self.pending: Pending | None = None
        self.steps = 0
        self.skill: Skill | None = None
        self.node_id = ""
        self._scope: dict[str, Any] | None = None

    # -------------------------------------------------------------------------------- walking

    def run_skill(self, skill: Skill, node_id: str) -> None:
        self.enter(skill)
        self.resume_at(node_id)

    def enter(self, skill: Skill) -> None:
        self.skill = skill
        self.state.skill_id = skill.id
        for name, decl in skill.variables.items():
            if name not in self.state.variables:
                self.set_variable(name, decl.default)

    def resume_at(self, node_id: str | None) -> None:
        """Walk from ``node_id`` until the bot waits or the skill ends."""
        state = self.state
        budget = self.engine.step_budget
        handlers = self.engine._handlers
        try:
            while node_id is not None:
                assert self.skill is not None
                node = self.skill.nodes.get(node_id)
                if node is None:
                    raise _SkillFault(f"skill {self.skill.id!r} has no node {node_id!r}", "unknown_node")
                self.steps += 1
                if self.steps > budget:
                    raise _SkillFault(
                        f"skill {self.skill.id!r} ran {budget} nodes without waiting for the customer "
                        f"(last at node {node_id!r}); check it for a loop",
                        "step_budget",
                    )
                self.node_id = node_id
                state.node_id = node_id
                node_id = handlers[type(node)](self, node)
            if state.waiting == "nothing":
                self.end_skill()
        except _SkillFault as fault:
            self.errors.append(SkillError(str(fault), kind=fault.kind, node=self.node_id))
            self.say(FALLBACK_REPLY, sender="system")
            self.end_skill()

    def end_skill(self) -> None:
        self.state.skill_id = None
        self.state.node_id = None
        self.state.waiting = "nothing"
        self.state.retries = 0

    def wait_for_customer(self, node_id: str, node: QuestionNode, *, prompt: bool) -> None:
        if prompt:
            self.state.retries = 0
            buttons = None
            if node.choices:
                buttons = [{"label": c.label, "value": c.effective_value} for c in node.choices]
            elif node.buttons:
                buttons = self.buttons(node.buttons)
            self.say(self.render(node.text), buttons=buttons)
        self.state.waiting = "customer"
        self.state.node_id = node_id
        self.pending = _pending_for(node_id, node)

    def save_answer(self, node: QuestionNode, value: Any) -> None:
        self.state.waiting = "nothing"
        self.state.retries = 0
        if node.save_to:
            self.set_variable(node.save_to, value)

    # -------------------------------------------------------------------------------- output

    def say(self, text: str, *, buttons: list[dict[str, str]] | None = None, sender: str = "bot") -> None:
        kind = "buttons" if buttons else "text"
        self.messages.append(BotMessage(text=text, type=kind, buttons=buttons or None, sender=sender))  # type: ignore[arg-type]

    def buttons(self, buttons: Any) -> list[dict[str, str]] | None:
        if not buttons:
            return None
        rendered = []
        for button in buttons:
            item = {"label": self.render(button.label)}
            if button.url is not None:
                item["url"] = self.render(button.url)
            else:
                item["value"] = button.value if button.value is not None else button.label
            rendered.append(item)
        return rendered

    # -------------------------------------------------------------------------------- expressions

    @property
    def scope(self) -> dict[str, Any]:
        if self._scope is None:
            ctx = self.ctx
            # random_int() and uuid() first: a skill's variable of the same name hides them, as it hides the library's functions.
            self._scope = {
                **drawing_from(ctx.random),
                **self.state.variables,
                "conversation": {"id": ctx.conversation_id, "started_at": ctx.started_at},
                "user": ctx.user,
                "env": ctx.env,
                "generate_token": self._generate_token,
                "now": lambda: ctx.now,
                "today": lambda: ctx.now.date(),
            }
        return self._scope

    def set_variable(self, name: str, value: Any) -> None:
        if name in BUILTIN_NAMES:
            raise _SkillFault(f"{name!r} is read-only", "read_only_variable")
        self.state.variables[name] = value
        if self._scope is not None:
            self._scope[name] = value

    def evaluate(self, source: str) -> Any:
        try:
            return self.engine.expressions.evaluate(source, self.scope)
        except ExpressionError as exc:
            raise _SkillFault(f"node {self.node_id!r}: {exc}", "expression") from exc

    def render(self, source: str) -> str:
        if "{" not in source:
            return source
        try:
            return self.engine.expressions.render(source, self.scope)
        except ExpressionError as exc:
            raise _SkillFault(f"node {self.node_id!r}: {exc}", "expression") from exc

    def render_tree(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.render(value)
        if isinstance(value, dict):
            return {k: self.render_tree(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render_tree(v) for v in value]
        return value

    def _generate_token(self, ttl: str | int | None = None, uses: int | None = None) -> TokenRef:
        defaults = self.engine.bot.config.tokens
        try:
            lifetime = parse_duration(ttl if ttl is not None else defaults.ttl)
        except ValueError as exc:
            raise ExpressionError(f"generate_token(ttl={ttl!r}): {exc}") from exc
        max_uses = uses if uses is not None else defaults.max_uses
        if max_uses is not None and (
            not isinstance(max_uses, int) or isinstance(max_uses, bool) or max_uses < 1
        ):
            raise ExpressionError(f"generate_token(uses={uses!r}): uses must be a whole number of at least 1")
        token = mint(self.ctx.random)
        self.ctx.token_secrets[token.token_id] = token.secret
        self.effects.append(IssueToken(token.token_id, token.token_hash, lifetime.total_seconds(), max_uses))
        return TokenRef(token.token_id)

    # -------------------------------------------------------------------------------- result

    def finish(self) -> StepResult:
        return StepResult(
            state=self.state,
            messages=self.messages,
            effects=self.effects,
            http_call=self.http_call,
            pending=self.pending,
            steps=self.steps,
            errors=self.errors,
        )
