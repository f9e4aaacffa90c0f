"""The engine's vocabulary: conversation state, inputs, outputs and effects.

Everything here is plain data so that the shell (service, store, server) can persist and pass it around.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from random import Random
from typing import Any, Literal

from rejoinder.credentials import STRONG_RANDOM

# ----------------------------------------------------------------------------------------- state

Status = Literal["active", "closed"]
# Where a stored state records the bot version it runs on, for the shell to read without parsing the state.
STATE_VERSION_KEY = "bot_version"
Waiting = Literal["nothing", "customer", "http"]


@dataclass
class ConversationState:
    """Where a conversation stands between turns. Serialised as JSON in the store."""

    variables: dict[str, Any] = field(default_factory=dict)
    skill_id: str | None = None
    node_id: str | None = None  # the question waited at, or the integrate node whose call is outstanding
    waiting: Waiting = "nothing"
    retries: int = 0  # invalid answers given at the current question
    status: Status = "active"
    bot_version: str | None = None  # the bot version it began on: kept by the shell, never read by the engine

    def to_json(self) -> dict[str, Any]:
        # Field by field: asdict() deep-copies every variable, and a turn stores its state only once.
        return {
            "variables": dict(self.variables),
            "skill_id": self.skill_id,
            "node_id": self.node_id,
            "waiting": self.waiting,
            "retries": self.retries,
            "status": self.status,
            STATE_VERSION_KEY: self.bot_version,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConversationState:
        return cls(**data)

    def copy(self) -> ConversationState:
        return ConversationState(
            variables=dict(self.variables),
            skill_id=self.skill_id,
            node_id=self.node_id,
            waiting=self.waiting,
            retries=self.retries,
            status=self.status,
            bot_version=self.bot_version,
        )


# ----------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class StartEvent:
    """Start the skill whose triggers list ``name``."""

    name: str
    variables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CustomerText:
    text: str


@dataclass(frozen=True)
class CustomerChoice:
    """A click on a quick-reply button: the choice's value."""

    value: str


@dataclass(frozen=True)
class HttpResponse:
    """The outcome of an :class:`HttpCall`: a response (any status) or a transport error."""

    status: int | None = None
    body: Any = None  # parsed JSON when the response was JSON, else the text
    error: str | None = None  # set when no usable response came (timeout, refused, SSRF guard, too large…)
    elapsed_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


Input = StartEvent | CustomerText | CustomerChoice | HttpResponse

# ----------------------------------------------------------------------------------------- outputs


@dataclass(frozen=True)
class BotMessage:
    """One message from the bot as the customer sees it."""

    text: str
    type: Literal["text", "buttons"] = "text"
    buttons: list[dict[str, str]] | None = None  # {label, url} links or {label, value} quick replies
    sender: Literal["bot", "system"] = "bot"

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"type": self.type, "text": self.text}
        if self.buttons is not None:
            payload["buttons"] = self.buttons
        return payload


@dataclass(frozen=True)
class Pending:
    """What the bot waits for: the question node, its input kind, and its choices if any."""

    node: str
    input: str = "text"
    choices: list[dict[str, str]] | None = None  # [{label, value}]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"node": self.node, "input": self.input}
        if self.choices is not None:
            data["choices"] = self.choices
        return data


# ----------------------------------------------------------------------------------------- effects


@dataclass(frozen=True)
class HttpCall:
    """An outbound HTTP request an ``integrate`` node needs. The shell performs it and feeds back HttpResponse."""

    node_id: str
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    json_body: Any = None  # sent as JSON when not None
    content: str | None = None  # a text body from a string template (sent as is)
    timeout: float = 10.0
    retries: int = 0
    # The secrets of the tokens minted this turn, by token id. The fields above hold only their references
    # (``tokref-tok_…``); the request builder puts the secrets in their place in the bytes it sends.
    token_secrets: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class IssueToken:
    """A conversation token that ``generate_token()`` created this turn; persist it with the turn."""

    token_id: str
    token_hash: str  # SHA-256 hex of the secret; the secret itself never leaves the turn
    ttl_seconds: float
    max_uses: int | None


@dataclass(frozen=True)
class CloseConversation:
    """The skill ended with ``close: true``."""


Effect = IssueToken | CloseConversation


# The names under which a skill reads the turn context (conversation, user, env): no skill may set them.
BUILTIN_NAMES = frozenset({"env", "conversation", "user"})


@dataclass
class TurnContext:
    """What the shell tells the engine about the world for one turn (read-only to skills)."""

    conversation_id: str
    started_at: datetime
    now: datetime
    user: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # only the names the bot allows
    # Everything random in a turn comes from here: generate_token(), random_int(), uuid(). A fixed source (a
    # seeded Random) makes a turn replay exactly.
    random: Random = field(default=STRONG_RANDOM, repr=False)
    # The secrets of the tokens minted this turn, by token id: they live as long as this context, one turn.
    token_secrets: dict[str, str] = field(default_factory=dict, repr=False)


class SkillError(str):
    """A skill fault's message, for the designer, with what a server log may keep of it.

    The message may quote values the customer typed (``int('4111 1111'): not a number``); ``kind`` and ``node``
    never do, so logs use them alone.
    """

    kind: str
    node: str | None

    def __new__(cls, message: str, *, kind: str, node: str | None) -> SkillError:
        made = super().__new__(cls, message)
        made.kind = kind
        made.node = node
        return made

    def for_log(self) -> str:
        return f"{self.kind} at node {self.node!r}" if self.node else self.kind


class HandledFault(SkillError):
    """A skill fault the skill handled itself: an Integrate call that failed and went on at its ``on_error``.

    It is a plain string everywhere (conversation tests, the designer's view); a front end may show it as less
    than an error.
    """

    __slots__ = ()


@dataclass
class StepResult:
    """What one call of :meth:`Engine.step` produced."""

    state: ConversationState
    messages: list[BotMessage] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    http_call: HttpCall | None = None  # when set, perform it and call step() again with its HttpResponse
    pending: Pending | None = None  # when set, the bot waits for the customer
    steps: int = 0  # nodes executed
    # Skill faults met this step, for the designer (SkillError: what a log may keep of each); those the skill
    # handled are HandledFault.
    errors: list[str] = field(default_factory=list)
