"""The conversation-test file (``BOT_DIR/tests/*.yaml``) as strict Pydantic models.

Every mapping rejects unknown keys. Each test, step and fake remembers the line it was written on (set by the
loader), so a failure can point at ``file:line``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Located(Strict):
    """A part of the file whose line the loader records (1-based; 0 when built in code)."""

    _line: int = PrivateAttr(default=0)

    @property
    def line(self) -> int:
        return self._line


class FakeResponse(Located):
    """How the fake backend answers an Integrate call whose method and URL match.

    ``url`` is a glob (``*``, ``?``) or an exact URL; the call's query string counts only if ``url`` has one.
    """

    method: str | None = None  # any method when left out
    url: str
    status: int = Field(default=200, ge=100, le=599)
    json_: Any = Field(default=None, alias="json")
    body: str | None = None
    error: str | None = None  # a transport failure instead of a response, e.g. "timeout"
    times: int | None = Field(default=None, ge=1)  # answer this many calls, then let later fakes answer

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, method: Any) -> Any:
        return method.upper() if isinstance(method, str) else method

    @model_validator(mode="after")
    def _one_answer(self) -> FakeResponse:
        given = self.model_fields_set
        if "json_" in given and "body" in given:
            raise ValueError("a fake answers with 'json' or with 'body', not both")
        if self.error is not None and given & {"json_", "body", "status"}:
            raise ValueError("a fake with 'error' fails the call; it takes no 'status', 'json' or 'body'")
        return self

    @property
    def has_json(self) -> bool:
        return "json_" in self.model_fields_set

    def describe(self) -> str:
        answer = f"error {self.error!r}" if self.error is not None else f"status {self.status}"
        return f"{self.method or 'any method'} {self.url} → {answer}"


class Start(Located):
    """How a test opens its conversation: a skill event, or a first customer message."""

    event: str | None = None
    text: str | None = None
    variables: dict[str, Any] = Field(default_factory=dict)
    user: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _event_or_text(self) -> Start:
        if (self.event is None) == (self.text is None):
            raise ValueError("'start' takes exactly one of 'event' or 'text'")
        return self


class CallExpectation(Strict):
    """An Integrate call the last turn made. Strings are globs; mappings match the keys they list."""

    method: str | None = None
    url: str | None = None
    query: dict[str, Any] | None = None
    headers: dict[str, str] | None = None
    json_: Any = Field(default=None, alias="json")
    body: str | None = None
    times: int | None = Field(default=None, ge=0)  # exactly this many matching calls (default: at least one)

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, method: Any) -> Any:
        return method.upper() if isinstance(method, str) else method

    def criteria(self) -> dict[str, Any]:
        """The parts the test gave, by their name in the file."""
        return {
            ("json" if name == "json_" else name): getattr(self, name)
            for name in type(self).model_fields
            if name in self.model_fields_set and name != "times"
        }


class PendingExpectation(Strict):
    """What the bot waits for: the question node, its input kind, its choices (``[{label, value}]``)."""

    node: str | None = None
    input: str | None = None
    choices: list[dict[str, str]] | None = None

    def criteria(self) -> dict[str, Any]:
        return {
            name: getattr(self, name) for name in type(self).model_fields if name in self.model_fields_set
        }


class Step(Located):
    """One step: a customer action (``say``, ``choose``, ``resume``) or an expectation. Exactly one key."""

    say: str | None = None
    choose: str | None = None
    resume: str | None = None  # "last_token" or a token
    bot: str | None = None
    bot_exact: str | list[str] | None = None
    bot_matches: str | None = None
    buttons: list[str] | None = None
    http_called: CallExpectation | None = None
    variables: dict[str, Any] | None = None
    pending: PendingExpectation | None = None
    status: Literal["active", "closed"] | None = None
    no_errors: Literal[True] | None = None
    errors: list[str] | None = None

    @field_validator("bot_matches")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from exc
        return pattern

    @model_validator(mode="after")
    def _one_key(self) -> Step:
        given = self.model_fields_set
        if len(given) != 1:
            found = ", ".join(sorted(given)) or "none"
            raise ValueError(
                f"a step has exactly one key, found {len(given)}: {found} (start each step with '- ')"
            )
        if self.value is None and self.kind != "pending":
            raise ValueError(
                f"'{self.kind}' needs a value (only 'pending' takes null: the bot waits for nothing)"
            )
        return self

    @property
    def kind(self) -> str:
        return next(iter(self.model_fields_set))

    @property
    def value(self) -> Any:
        return getattr(self, self.kind)


class ConversationTest(Located):
    """One test: how the conversation starts, the fake backend's answers, then the steps in order."""

    name: str = Field(min_length=1)
    start: Start | None = None
    http: list[FakeResponse] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    expect_errors: bool = False  # skill faults do not fail this test

    @model_validator(mode="after")
    def _does_something(self) -> ConversationTest:
        if self.start is None and (not self.steps or self.steps[0].kind != "say"):
            raise ValueError("a test opens with 'start:' or with a 'say:' step")
        return self


class ConversationTestFile(Strict):
    """A whole test file: the bot under test, the environment its skills see, shared fakes, and the tests."""

    bot: str | None = None  # the bot directory, relative to this file; default: the directory above tests/
    env: dict[str, str] = Field(default_factory=dict)
    http: list[FakeResponse] = Field(default_factory=list)  # tried after each test's own fakes
    tests: list[ConversationTest] = Field(min_length=1)

    _env_lines: dict[str, int] = PrivateAttr(default_factory=dict)

    def env_line(self, name: str) -> int:
        """The line where the file sets the environment variable ``name``."""
        return self._env_lines.get(name, 0)

    @model_validator(mode="after")
    def _unique_names(self) -> ConversationTestFile:
        seen: set[str] = set()
        for test in self.tests:
            if test.name in seen:
                raise ValueError(f"two tests are named {test.name!r}; test names must be unique in a file")
            seen.add(test.name)
        return self
