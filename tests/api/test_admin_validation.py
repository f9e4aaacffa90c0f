"""Skill uploads are validated off the event loop, and a bad skill gets problems, never a 500."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.helpers.admin_api import Api

pytestmark = pytest.mark.timeout(120)


def large_skill(pairs: int) -> str:
    """A valid skill of ``pairs`` message and assign nodes (about 220 bytes each)."""
    lines = ["id: big", "triggers: {events: [big]}", "start: n0", "nodes:"]
    for index in range(pairs):
        lines += [
            f"  n{index}:",
            "    type: message",
            f"    text: 'Item {index}: {{{{ items[{index % 7}] | default(\"none\") | upper }}}}'",
            f"    next: a{index}",
            f"  a{index}:",
            "    type: assign",
            "    set:",
            f"      v{index}: v{index - 1} + {index} if v{index - 1} is defined else {index}",
            f"    next: n{index + 1}",
        ]
    lines += [f"  n{pairs}:", "    type: end"]
    return "\n".join(lines)


async def test_a_large_upload_does_not_hold_the_event_loop(api: Api) -> None:
    text = large_skill(1100)
    assert len(text) > 200_000
    began = time.perf_counter()
    upload = asyncio.create_task(api.put_skill("big", text))
    await asyncio.sleep(0.05)  # the upload is under way
    gaps: list[float] = []
    while not upload.done():
        started = time.perf_counter()
        await asyncio.sleep(0.01)
        gaps.append(time.perf_counter() - started)
    answer = await upload
    took = time.perf_counter() - began
    assert answer.status_code == 201, answer.text
    assert len(gaps) >= 10, "the upload ended before the loop was ever measured"
    # On the loop, parsing and validation held it for most of the upload (4.5 s of about 5). Off it, the loop
    # runs every few milliseconds; on a loaded machine a pause of a few hundred is the scheduler, not the upload.
    assert max(gaps) < 0.25 * took, (
        f"the event loop stalled for {max(gaps):.2f} s of the upload's {took:.2f} s"
    )


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ("{type: message, text: '{{ x | shout }}', next: done}", "No filter named 'shout'"),
        (
            "{type: condition, branches: [{if: y is truthy, next: done}], else: done}",
            "No test named 'truthy'",
        ),
        ("{type: assign, set: {t: 'make_token(ttl=\"30m\")'}, next: done}", "no function named 'make_token'"),
        ("{type: assign, set: {t: 'generate_token(ttl=\"30 minutes\")'}, next: done}", "expected a duration"),
        (
            "{type: integrate, url: 'https://x.test', save: {id: order-id}, next: done}",
            "not a valid variable",
        ),
        (
            "{type: assign, set: {t: '" + "(" * 1000 + "1" + ")" * 1000 + "'}, next: done}",
            "nested too deeply",
        ),
    ],
)
async def test_a_bad_skill_gets_problems_with_lines_not_a_500(api: Api, node: str, message: str) -> None:
    text = f"id: bad\ntriggers: {{events: [bad]}}\nstart: run\nnodes:\n  run: {node}\n  done: {{type: end}}\n"
    answer = await api.put_skill("bad", text)
    assert answer.status_code == 422, answer.text
    problems = answer.json()["problems"]
    assert any(message in problem["text"] and problem.get("line") == 5 for problem in problems), problems
