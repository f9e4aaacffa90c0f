"""Credentials and public ids: how each is spelled, made and stored.

A credential is a readable prefix and 256 random bits as 43 URL-safe base64 characters: ``rjt_`` conversation
token, ``pk_`` SDK key, ``sk_`` secret key, ``ses_`` session, ``rjc_`` console session (the console's cookie).
Only its SHA-256 is stored; lookups are by hash, so no secret is ever compared character by character.

What logs, audits and the admin API show instead is a public id: a prefix and 24 hex digits (``tok_`` token,
``key_`` API key, ``sid_`` session, ``cnv_`` conversation, ``csn_`` console session, ``usr_`` console user).
"""

from __future__ import annotations

import base64
import hashlib
import re
from random import Random, SystemRandom

TOKEN_PREFIX = "rjt_"
SDK_KEY_PREFIX = "pk_"
SECRET_KEY_PREFIX = "sk_"
SESSION_PREFIX = "ses_"
CONSOLE_SESSION_PREFIX = "rjc_"

TOKEN_ID_PREFIX = "tok_"
KEY_ID_PREFIX = "key_"
SESSION_ID_PREFIX = "sid_"
CONVERSATION_ID_PREFIX = "cnv_"
CONSOLE_SESSION_ID_PREFIX = "csn_"
CONSOLE_USER_ID_PREFIX = "usr_"

# What every credential is drawn from unless its maker brings its own source (a turn replayed in a test):
# the operating system's cryptographically strong randomness.
STRONG_RANDOM: Random = SystemRandom()

SECRET_BYTES = 32  # 256 bits
SECRET_LENGTH = 43  # SECRET_BYTES in unpadded base64
SECRET_CHARACTERS = "[A-Za-z0-9_-]"
PUBLIC_ID_BYTES = 12
PUBLIC_ID_DIGITS = f"[0-9a-f]{{{PUBLIC_ID_BYTES * 2}}}"

_KINDS = "|".join(
    prefix.removesuffix("_")
    for prefix in (TOKEN_PREFIX, SESSION_PREFIX, CONSOLE_SESSION_PREFIX, SECRET_KEY_PREFIX, SDK_KEY_PREFIX)
)
# A credential in free text, whole or cut short (from 16 characters of secret on), for logs to redact; the
# group is its kind (``ses``), which a redacted line keeps.
SECRET_IN_TEXT = re.compile(rf"(?<![A-Za-z0-9])({_KINDS})_{SECRET_CHARACTERS}{{16,}}")


def new_secret(prefix: str, source: Random = STRONG_RANDOM) -> str:
    return prefix + base64.urlsafe_b64encode(source.randbytes(SECRET_BYTES)).rstrip(b"=").decode()


def hash_secret(secret: str) -> str:
    """The SHA-256 a credential is stored and looked up by."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_public_id(prefix: str, source: Random = STRONG_RANDOM) -> str:
    return prefix + source.randbytes(PUBLIC_ID_BYTES).hex()
