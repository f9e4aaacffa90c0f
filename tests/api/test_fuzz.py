"""A schema-driven fuzz run: schemathesis generates requests for every operation of ``/openapi.json``.

Valid requests (positive mode) must be answered as the document says: no 5xx, a documented status, the documented
content type and body schema. Invalid ones (negative mode) must be refused with a 4xx, never a 5xx. Each request
carries the credential its operation asks for, so that the fuzzing reaches past authentication; the routes of one
conversation get a real conversation id and its session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.python.asgi import get_client, shutdown_lifespans
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from rejoinder.config import Settings
from rejoinder.server.app import create_app
from rejoinder.server.ratelimit import ResumeGuard
from rejoinder.service.keys import IssuedKeys, create_keys
from rejoinder.skills import load_bot
from rejoinder.store import Store

pytestmark = pytest.mark.timeout(400)  # wall time: at load 8 on 2 cores the run took 80 s

EXAMPLE_BOT = Path(__file__).resolve().parents[2] / "examples" / "shop"
MAX_EXAMPLES = 15  # per operation and generation mode
# CPU seconds of this process (the app runs in it) for the whole run; operations left when it is spent fail the
# test. CPU, not wall time: a busy machine slows the run without making it more work.
CPU_BUDGET = 60.0

FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,  # nothing written to .hypothesis/
    # Without shrinking a failure is reported as found: bounded time, and the reproducer is printed anyway.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)

# Skipped checks, and why:
# - positive_data_acceptance expects a 2xx for every schema-valid request, but a valid request may still be
#   refused for what it names: a random skill id or token id does not exist (404), a random event triggers no
#   skill (400 unknown_event), a random token is unknown (404) — the data is valid, the state says no.
EXCLUDED_CHECKS: list[schemathesis.CheckFunction] = [positive_data_acceptance]


@dataclass
class Caller:
    """The credentials of the fuzz run; the session changes when the refresh operation is fuzzed."""

    keys: IssuedKeys
    conversation_id: str
    session: str

    def header(self, operation: APIOperation) -> dict[str, str]:
        """The Authorization header the operation's security requirement names (none for open routes)."""
        schemes = {
            name for requirement in operation.definition.raw.get("security", []) for name in requirement
        }
        secret = {
            "sdk_key": self.keys.sdk_key,
            "secret_key": self.keys.secret_key,
            "session": self.session,
        }
        chosen = [secret[name] for name in sorted(schemes) if name in secret]
        return {"Authorization": f"Bearer {chosen[0]}"} if chosen else {}


@pytest.fixture
def fuzzed(tmp_path: Path) -> Iterator[tuple[schemathesis.BaseSchema, Caller]]:
    """The app on a fresh SQLite database, its OpenAPI schema, and a started conversation."""
    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    keys = asyncio.run(_create_keys(url))
    app = create_app(
        {"shop": load_bot(EXAMPLE_BOT)},
        store=Store.from_url(url),
        settings=Settings(database_url=url, redis_url=None),
        environ={"SHOP_BACKEND": "http://127.0.0.1:9", "SHOP_IDENTITY_SECRET": "fuzz"},
        # Fuzzed resumes fail by the hundred: without this they would all meet the 429 of the guard.
        resume_guard=ResumeGuard.in_memory(ip_limit=1_000_000, bot_limit=1_000_000),
    )
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        with get_client(app) as client:
            started = client.post(
                "/v1/conversations",
                json={"event": "welcome"},
                headers={"Authorization": f"Bearer {keys.sdk_key}"},
            )
        assert started.status_code == 201, started.text
        answer = started.json()
        yield schema, Caller(keys, answer["conversation_id"], answer["session"])
    finally:
        shutdown_lifespans()  # the app's lifespan runs in schemathesis' event-loop thread: stop it there


async def _create_keys(url: str) -> IssuedKeys:
    store = Store.from_url(url)
    try:
        await store.upgrade()
        return await create_keys(store, "shop", now=datetime.now(UTC))
    finally:
        await store.close()


def test_no_operation_answers_5xx_or_breaks_its_schema(
    fuzzed: tuple[schemathesis.BaseSchema, Caller],
) -> None:
    schema, caller = fuzzed
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"/openapi.json has an invalid operation: {result.err()}"
        operations.append(result.ok())
    labels = {operation.label for operation in operations}
    # The run covers the whole API: a route that fell out of the document would escape the fuzzing.
    assert {
        "POST /v1/conversations",
        "POST /v1/conversations/resume",
        "POST /v1/conversations/{conversation_id}/messages",
        "GET /v1/conversations/{conversation_id}/messages",
        "POST /v1/conversations/{conversation_id}/session/refresh",
        "GET /healthz",
        "GET /readyz",
    } <= labels

    deadline = time.process_time() + CPU_BUDGET
    failures: list[str] = []
    calls = 0
    for operation in operations:
        fixed = _fixed_path(operation, caller)
        modes = [GenerationMode.POSITIVE]
        if _negatable(operation, fixed):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            assert time.process_time() < deadline, f"the fuzz run took over {CPU_BUDGET:.0f} s of CPU"
            try:
                calls += _fuzz(operation, mode, caller, fixed)
            except Exception as failure:
                failures.append(f"{operation.label} ({mode.value}): {failure}")

    assert not failures, "\n\n".join(failures)
    assert calls >= len(operations)  # every operation was called


def _fixed_path(operation: APIOperation, caller: Caller) -> dict[str, str]:
    """The run's conversation in the path of the routes that take one (a random id would only meet 403/404)."""
    # Erasing the run's conversation would turn every later request on it into a 404.
    if "{conversation_id}" in operation.path and operation.method.upper() != "DELETE":
        return {"conversation_id": caller.conversation_id}
    return {}


def _negatable(operation: APIOperation, fixed: dict[str, str]) -> bool:
    """Whether the operation has an input left to make invalid (healthz, say, has none)."""
    free_path = [parameter for parameter in operation.path_parameters if parameter.name not in fixed]
    return bool(free_path or len(operation.query) or len(operation.headers) or len(operation.body))


def _fuzz(operation: APIOperation, mode: GenerationMode, caller: Caller, fixed: dict[str, str]) -> int:
    """Run one operation's examples in one mode; return how many requests were made."""
    strategy = operation.as_strategy(mode, path_parameters=fixed or None)
    made = 0

    @FUZZ_SETTINGS
    @given(case=strategy)
    def examples(case: schemathesis.Case) -> None:
        nonlocal made
        auth = caller.header(operation)
        try:
            response = case.call(headers=auth)
        except Exception as error:
            # Starlette answers an unhandled exception with a 500, then re-raises it to the ASGI server.
            raise AssertionError(_reproducer(case, f"500: {type(error).__name__}: {error}")) from None
        made += 1
        if mode is GenerationMode.POSITIVE:
            case.validate_response(response, excluded_checks=EXCLUDED_CHECKS, headers=auth)
        else:
            assert response.status_code < 500, _reproducer(
                case, f"{response.status_code}: {response.text[:300]}"
            )
        if operation.path.endswith("/session/refresh") and response.status_code == 200:
            caller.session = response.json()["session"]  # the old session ended with the refresh

    examples()
    return made


def _reproducer(case: schemathesis.Case, answer: str) -> str:
    return f"answered {answer}\n    reproduce with: {case.as_curl_command()}"
