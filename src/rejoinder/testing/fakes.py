"""The fake backend: answers a test's Integrate calls from its declared fakes and records every call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rejoinder.engine import HttpCall, HttpResponse
from rejoinder.integrations import IntegratePolicy
from rejoinder.integrations.http import with_token_secrets
from rejoinder.testing.match import describe_call, url_matches
from rejoinder.testing.model import FakeResponse


class UnmatchedCall(Exception):
    """An Integrate call that no declared fake answers (the test fails with this message)."""


@dataclass(frozen=True)
class RecordedCall:
    call: HttpCall
    turn: int  # the number of the turn (0-based) that made the call


class FakeBackend:
    """Stands in for the Integrate client (``perform``, ``aclose``): answers from the fakes in order.

    The first fake whose method and URL match answers; a fake with ``times`` answers that many calls and then
    lets later fakes answer.
    """

    def __init__(self, fakes: Sequence[FakeResponse], *, shown: str = ""):
        self.fakes = list(fakes)
        self.shown = shown  # the test file, to point at the fakes in messages
        self.answered = [0] * len(self.fakes)
        self.calls: list[RecordedCall] = []
        self.turn = 0

    async def perform(self, call: HttpCall, policy: IntegratePolicy) -> HttpResponse:
        call = with_token_secrets(call)  # what a real backend would receive: the secrets, not the references
        self.calls.append(RecordedCall(call, self.turn))
        for i, fake in enumerate(self.fakes):
            if fake.times is not None and self.answered[i] >= fake.times:
                continue
            if fake.method not in (None, call.method.upper()) or not url_matches(fake.url, call):
                continue
            self.answered[i] += 1
            return answer(fake)
        raise UnmatchedCall(self._unmatched(call))

    async def aclose(self) -> None:
        """Nothing to close: no connection was ever opened."""

    def calls_in_turn(self, turn: int) -> list[HttpCall]:
        return [recorded.call for recorded in self.calls if recorded.turn == turn]

    def _unmatched(self, call: HttpCall) -> str:
        lines = [f"no fake answers the Integrate call of node {call.node_id!r}: {describe_call(call)}"]
        if not self.fakes:
            lines.append("no fakes are declared (add them under 'http:' in the test or the file)")
        else:
            lines.append("declared fakes:")
            for i, fake in enumerate(self.fakes):
                used = (
                    f" (used up: answered {fake.times})"
                    if fake.times and self.answered[i] >= fake.times
                    else ""
                )
                lines.append(f"  {self.shown}:{fake.line}: {fake.describe()}{used}")
        return "\n".join(lines)


def answer(fake: FakeResponse) -> HttpResponse:
    """The response a fake gives: a transport error, JSON, a text body, or an empty body."""
    if fake.error is not None:
        return HttpResponse(error=fake.error)
    return HttpResponse(status=fake.status, body=fake.json_ if fake.has_json else fake.body)
