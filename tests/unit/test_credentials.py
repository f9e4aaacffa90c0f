"""Credentials as they are issued: their form, what is stored of them, and that no log line shows one."""

from __future__ import annotations

import hashlib
import random
import re

import pytest

from rejoinder.credentials import (
    CONSOLE_SESSION_PREFIX,
    SDK_KEY_PREFIX,
    SECRET_KEY_PREFIX,
    SESSION_PREFIX,
    TOKEN_PREFIX,
    new_public_id,
    new_secret,
)
from rejoinder.server.ops.logs import redact
from rejoinder.tokens import is_well_formed, mint


@pytest.mark.parametrize(
    "prefix", [TOKEN_PREFIX, SDK_KEY_PREFIX, SECRET_KEY_PREFIX, SESSION_PREFIX, CONSOLE_SESSION_PREFIX]
)
def test_every_kind_of_credential_issued_is_redacted_from_logs(prefix: str) -> None:
    secret = new_secret(prefix)

    assert re.fullmatch(re.escape(prefix) + r"[A-Za-z0-9_-]{43}", secret)
    assert secret[len(prefix) :] not in redact(f"GET /v1/conversations/cnv_1?credential={secret} 200")


def test_a_minted_token_is_well_formed_and_stored_only_as_its_hash() -> None:
    token = mint()

    assert is_well_formed(token.secret)
    assert token.token_hash == hashlib.sha256(token.secret.encode()).hexdigest()
    assert re.fullmatch(r"tok_[0-9a-f]{24}", token.token_id)
    assert token.secret[len(TOKEN_PREFIX) :] not in token.token_id


def test_credentials_drawn_from_one_seeded_source_repeat_and_from_the_system_never_do() -> None:
    assert mint(random.Random(3)) == mint(random.Random(3))
    assert new_public_id("sid_", random.Random(3)) == new_public_id("sid_", random.Random(3))
    assert len({mint().secret for _ in range(100)}) == 100
