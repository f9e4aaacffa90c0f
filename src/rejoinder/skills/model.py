"""The skill language as Pydantic models: a bot's settings, its skills and every node type.

These models check shape only (types, required fields, unknown fields). Each node type also states the facts
about itself that the rest of the house asks for: its edges (:meth:`NodeBase.edges`), the expressions and
templates it holds (:meth:`NodeBase.expressions`), the variables it sets and reads by name, whether it
waits for the customer, and the mistakes its shape allows but the skill language does not
(:meth:`NodeBase.flaws`). The graph drawing and the validator ask the node; they never switch on its type.
Whole-graph rules such as missing targets, unreachable nodes or loops that never wait live in
:mod:`rejoinder.skills.validate`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from rejoinder.expr.jsonpath import InvalidPath
from rejoinder.expr.jsonpath import parse as parse_path
from rejoinder.expr.patterns import PatternError, compile_pattern

ID_PATTERN = r"^[a-z0-9_]+$"
BOT_ID_PATTERN = r"^[a-z0-9_-]+$"

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = timedelta(days=3660)  # ten years: longer is a mistake, and dates that far out overflow


def parse_duration(value: str | int | float) -> timedelta:
    """Parse ``"15m"``, ``"24h"``, ``"7d"`` (or a number of seconds) into a timedelta."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '15m', '24h' or '7d', got {value!r}")
    if isinstance(value, int | float):
        seconds: float = value
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration such as '15m', '24h' or '7d', got {value!r}")
        seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {value!r}")
    if not seconds <= MAX_DURATION.total_seconds():  # also refuses NaN and infinity
        raise ValueError(f"a duration may be at most 10 years, got {value!r}")
    return timedelta(seconds=seconds)


class Strict(BaseModel):
    """Base for every model of the language: unknown fields are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------------------------- nodes


class Button(Strict):
    """A button under a bot message: a link (``url``) or a quick reply (``value``: the customer's text)."""

    label: str
    url: str | None = None
    value: str | None = None

    @model_validator(mode="after")
    def _link_or_reply(self) -> Button:
        if self.url is not None and self.value is not None:
            raise ValueError("a button is either a link (url) or a quick reply (value), not both")
        return self


FieldPath = tuple[str | int, ...]  # where a value is written inside a node, e.g. ("branches", 0, "next")


@dataclass(frozen=True)
class Edge:
    """A way out of a node to another node of the same skill."""

    field: str  # next, on_error, on_invalid, else, choice, branch, to
    path: FieldPath  # where the target is written inside the node
    target: str
    label: str  # what a drawing writes on the edge


@dataclass(frozen=True)
class Expression:
    """One expression or template written in a node."""

    path: FieldPath
    source: str
    template: bool


@dataclass(frozen=True)
class Flaw:
    """A mistake inside one node that its shape allows: the validator reports it as an error."""

    path: FieldPath  # where inside the node; () for the node as a whole
    message: str


# The fields that name the next node whatever the node type, in the order edges list them.
_EXIT_FIELDS = ("next", "on_error", "on_invalid", "else_")


class NodeBase(Strict):
    description: str | None = None

    # A node that waits for the customer ends a turn: a cycle through one is no endless loop.
    waits_for_customer: ClassVar[bool] = False

    def edges(self) -> list[Edge]:
        """Every edge out of this node within its skill, in the order the node lists them."""
        return list(self._exits())

    def skill_jump(self) -> tuple[str, str | None] | None:
        """``(skill id, node id or None for its start)`` when this node jumps to another skill."""
        return None

    def expressions(self) -> Iterator[Expression]:
        """Every expression (``if:``, ``assign`` values) and template (texts, urls, headers…) the node holds."""
        return iter(())

    def variables_set(self) -> Iterator[tuple[FieldPath, str]]:
        """``(where, variable)`` for every variable the node sets."""
        return iter(())

    def variables_read_by_name(self) -> Iterator[tuple[FieldPath, str]]:
        """``(where, variable)`` for every variable the node reads by its name, outside its expressions."""
        return iter(())

    def flaws(self) -> Iterator[Flaw]:
        """Mistakes this node holds on its own, whatever the rest of the skill."""
        return iter(())

    def _exits(self) -> Iterator[Edge]:
        for field in _EXIT_FIELDS:
            target = getattr(self, field, None)
            if isinstance(target, str):
                name = field.rstrip("_")
                yield Edge(name, (name,), target, name)


class MessageNode(NodeBase):
    type: Literal["message"]
    text: str | None = None
    messages: list[str] | None = None
    buttons: list[Button] | None = None
    next: str | None = None

    @model_validator(mode="after")
    def _text_or_messages(self) -> MessageNode:
        if (self.text is None) == (self.messages is None):
            raise ValueError("a message node needs exactly one of 'text' or 'messages'")
        return self

    def expressions(self) -> Iterator[Expression]:
        if self.text is not None:
            yield Expression(("text",), self.text, True)
        for index, text in enumerate(self.messages or []):
            yield Expression(("messages", index), text, True)
        yield from _button_templates(self.buttons or [])


class Choice(Strict):
    label: str
    value: str | None = None
    next: str | None = None

    @property
    def effective_value(self) -> str:
        return self.label if self.value is None else self.value


class RegexInput(Strict):
    regex: str

    @field_validator("regex")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            compile_pattern(pattern)
        except PatternError as exc:
            raise ValueError(str(exc)) from None
        return pattern


InputKind = Literal["text", "number", "email"]


class QuestionNode(NodeBase):
    type: Literal["question"]
    text: str
    save_to: str | None = None
    choices: list[Choice] | None = None
    buttons: list[Button] | None = None
    input: InputKind | RegexInput = "text"
    retry_text: str | None = None
    max_retries: int | None = Field(default=None, ge=0)
    on_invalid: str | None = None
    else_: str | None = Field(default=None, alias="else")
    next: str | None = None

    waits_for_customer: ClassVar[bool] = True

    @property
    def input_name(self) -> str:
        return self.input if isinstance(self.input, str) else "regex"

    def edges(self) -> list[Edge]:
        chosen = [
            Edge("choice", ("choices", index, "next"), choice.next, choice.label)
            for index, choice in enumerate(self.choices or [])
            if choice.next is not None
        ]
        return [*chosen, *self._exits()]

    def expressions(self) -> Iterator[Expression]:
        yield Expression(("text",), self.text, True)
        yield from _button_templates(self.buttons or [])
        if self.retry_text is not None:
            yield Expression(("retry_text",), self.retry_text, True)

    def variables_set(self) -> Iterator[tuple[FieldPath, str]]:
        if self.save_to is not None:
            yield ("save_to",), self.save_to

    def flaws(self) -> Iterator[Flaw]:
        if self.save_to is None:
            yield Flaw((), "a question needs 'save_to': the variable that keeps the customer's answer")


AssignValue = str | int | float | bool | None | list[Any] | dict[str, Any]


class AssignNode(NodeBase):
    type: Literal["assign"]
    set: dict[str, AssignValue]
    next: str | None = None

    def expressions(self) -> Iterator[Expression]:
        for name, value in self.set.items():
            if isinstance(value, str):
                yield Expression(("set", name), value, False)

    def variables_set(self) -> Iterator[tuple[FieldPath, str]]:
        for name in self.set:
            yield ("set", name), name


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class IntegrateNode(NodeBase):
    type: Literal["integrate"]
    method: HttpMethod = "GET"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    send: list[str] | None = None
    body: str | dict[str, Any] | list[Any] | None = None
    query: dict[str, str] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0, le=120)
    retries: int = Field(default=0, ge=0, le=10)
    save: dict[str, str] = Field(default_factory=dict)
    save_status: str | None = None
    on_error: str | None = None
    next: str | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, method: Any) -> Any:
        return method.upper() if isinstance(method, str) else method

    @model_validator(mode="after")
    def _send_or_body(self) -> IntegrateNode:
        if self.send is not None and self.body is not None:
            raise ValueError("an integrate node takes 'send' (variables to send) or 'body', not both")
        return self

    def expressions(self) -> Iterator[Expression]:
        yield Expression(("url",), self.url, True)
        for field, values in (("headers", self.headers), ("query", self.query)):
            for key, value in values.items():
                yield Expression((field, key), value, True)
        yield from _tree_templates(("body",), self.body)

    def variables_set(self) -> Iterator[tuple[FieldPath, str]]:
        for path, name in self.save.items():
            yield ("save", path), name
        if self.save_status is not None:
            yield ("save_status",), self.save_status

    def variables_read_by_name(self) -> Iterator[tuple[FieldPath, str]]:
        for index, name in enumerate(self.send or []):
            yield ("send", index), name

    def flaws(self) -> Iterator[Flaw]:
        for path in self.save:
            try:
                parse_path(path)
            except InvalidPath as exc:
                yield Flaw(("save", path), f"save: {exc}")


class Branch(Strict):
    if_: str = Field(alias="if")
    next: str


class ConditionNode(NodeBase):
    type: Literal["condition"]
    branches: list[Branch] = Field(min_length=1)
    else_: str | None = Field(default=None, alias="else")

    def edges(self) -> list[Edge]:
        taken = [
            Edge("branch", ("branches", index, "next"), branch.next, branch.if_)
            for index, branch in enumerate(self.branches)
        ]
        return [*taken, *self._exits()]

    def expressions(self) -> Iterator[Expression]:
        for index, branch in enumerate(self.branches):
            yield Expression(("branches", index, "if"), branch.if_, False)


class JumpNode(NodeBase):
    type: Literal["jump"]
    to: str | None = None
    skill: str | None = None
    node: str | None = None

    @model_validator(mode="after")
    def _target(self) -> JumpNode:
        if (self.to is None) == (self.skill is None):
            raise ValueError("a jump node needs exactly one of 'to' (a node) or 'skill' (another skill)")
        if self.node is not None and self.skill is None:
            raise ValueError("'node' goes with 'skill'; to jump inside this skill use 'to'")
        return self

    def edges(self) -> list[Edge]:
        inside = [Edge("to", ("to",), self.to, "to")] if self.to is not None else []
        return [*inside, *self._exits()]

    def skill_jump(self) -> tuple[str, str | None] | None:
        return (self.skill, self.node) if self.skill is not None else None


class EndNode(NodeBase):
    type: Literal["end"]
    text: str | None = None
    close: bool = False

    def expressions(self) -> Iterator[Expression]:
        if self.text is not None:
            yield Expression(("text",), self.text, True)


Node = Annotated[
    MessageNode | QuestionNode | AssignNode | IntegrateNode | ConditionNode | JumpNode | EndNode,
    Field(discriminator="type"),
]
# Each node type's ``type:`` tag, in the order of the union above.
NODE_TYPES: tuple[str, ...] = tuple(
    get_args(node_type.model_fields["type"].annotation)[0] for node_type in get_args(get_args(Node)[0])
)


def _button_templates(buttons: Sequence[Button]) -> Iterator[Expression]:
    for index, button in enumerate(buttons):
        yield Expression(("buttons", index, "label"), button.label, True)
        if button.url is not None:
            yield Expression(("buttons", index, "url"), button.url, True)


def _tree_templates(path: FieldPath, value: Any) -> Iterator[Expression]:
    """Every string inside a JSON body, each a template."""
    if isinstance(value, str):
        yield Expression(path, value, True)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tree_templates((*path, key), item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _tree_templates((*path, index), item)


# --------------------------------------------------------------------------------------------- skills


class Triggers(Strict):
    events: list[str] = Field(default_factory=list)
    default: bool = False


class VariableDecl(Strict):
    default: Any = None
    settable: bool = False


class Skill(Strict):
    id: str = Field(pattern=ID_PATTERN)
    name: str | None = None
    description: str | None = None
    triggers: Triggers = Field(default_factory=Triggers)
    start: str
    variables: dict[str, VariableDecl] = Field(default_factory=dict)
    nodes: dict[str, Node] = Field(min_length=1)


# --------------------------------------------------------------------------------------------- bot


def _valid_duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[str, AfterValidator(_valid_duration)]  # a setting such as "15m", "24h" or "7d"


class TokenDefaults(Strict):
    ttl: Duration = "24h"
    max_uses: int | None = Field(default=None, ge=1)


class SessionSettings(Strict):
    ttl: Duration = "12h"


class IntegrateSettings(Strict):
    allow_hosts: list[str] = Field(default_factory=list)
    timeout: float = Field(default=10, gt=0, le=120)
    signing_secret_env: str | None = None
    max_response_bytes: int = Field(default=1_048_576, gt=0)


class IdentitySettings(Strict):
    secret_env: str


_ACCENT = r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"


class WidgetSettings(Strict):
    """How the web widget looks for this bot: sent to every page that loads the SDK with the bot's key."""

    title: str | None = Field(default=None, min_length=1, max_length=60)
    accent: str | None = Field(default=None, pattern=_ACCENT, description="A CSS colour: #rgb or #rrggbb.")
    avatar: str | None = Field(default=None, max_length=2000, description="An http(s) URL of a square image.")
    greeting_name: str | None = Field(default=None, min_length=1, max_length=60)

    @field_validator("avatar")
    @classmethod
    def _http_url(cls, avatar: str | None) -> str | None:
        # The widget puts it in an <img src>: only plain web addresses, never javascript: or data: URLs.
        if avatar is not None and not re.match(r"^https?://[^\s/]+\S*$", avatar):
            raise ValueError(f"avatar must be an http(s) URL, got {avatar[:100]!r}")
        return avatar


class BotConfig(Strict):
    """``rejoinder.yaml``: a bot's settings."""

    id: str = Field(pattern=BOT_ID_PATTERN)
    name: str | None = None
    allowed_origins: list[str] = Field(default_factory=list)
    tokens: TokenDefaults = Field(default_factory=TokenDefaults)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    integrate: IntegrateSettings = Field(default_factory=IntegrateSettings)
    env: list[str] = Field(default_factory=list)
    identity: IdentitySettings | None = None
    # Conversations idle for longer are erased by the server (and `rejoinder db purge`); None keeps them.
    retention: str | None = None
    # The event that `Alli.event()` with no name starts; a bot without a skill for it waits for a first message.
    welcome_event: str = Field(default="welcome", min_length=1, max_length=100)
    widget: WidgetSettings = Field(default_factory=WidgetSettings)

    @field_validator("retention")
    @classmethod
    def _retention(cls, retention: str | None) -> str | None:
        if retention is not None and parse_duration(retention) < timedelta(hours=1):
            raise ValueError("retention must be at least 1h: a shorter one would erase conversations in use")
        return retention


class Bot(BaseModel):
    """A loaded bot: its settings and its skills by id (what the engine runs)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    config: BotConfig
    skills: dict[str, Skill]
    version: str = ""

    @property
    def id(self) -> str:
        return self.config.id

    def event_skill(self, event: str) -> Skill | None:
        return next((s for s in self.skills.values() if event in s.triggers.events), None)

    def default_skill(self) -> Skill | None:
        return next((s for s in self.skills.values() if s.triggers.default), None)
