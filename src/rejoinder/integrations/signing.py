"""Signatures on Integrate calls, so a receiver can check that a call came from this server, unaltered.

Two headers: ``X-Rejoinder-Timestamp: <unix seconds>`` and
``X-Rejoinder-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``, where body is the exact bytes
sent (empty when there is none). The timestamp is signed too, so an old call cannot be replayed after the
receiver's tolerance window.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Rejoinder-Timestamp"
SIGNATURE_HEADER = "X-Rejoinder-Signature"
SCHEME = "v1"


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def sign(secret: bytes | str, timestamp: int | str, body: bytes | str) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = f"{timestamp}.".encode("ascii") + _as_bytes(body)
    return hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()


def signature_headers(secret: bytes | str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """The two headers that sign ``body``, stamped with ``now`` (default: the current time)."""
    timestamp = int(time.time() if now is None else now)
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{SCHEME}={sign(secret, timestamp, body)}",
    }


def verify_signature(
    secret: bytes | str,
    timestamp: int | str,
    body: bytes | str,
    header: str,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (the X-Rejoinder-Signature value) signs ``body`` at ``timestamp`` with ``secret``.

    False as well when the timestamp is malformed or more than ``tolerance`` seconds away from ``now``. The
    header may list several comma-separated ``v1=`` values (e.g. while a secret is being rotated); one match
    is enough. Comparison is constant-time.
    """
    try:
        stamp = int(str(timestamp).strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        return False
    expected = sign(secret, stamp, body).encode("ascii")
    matched = False
    for part in header.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == SCHEME:
            # Every candidate is compared, so the timing does not tell which one matched.
            matched |= hmac.compare_digest(expected, value.strip().lower().encode("utf-8"))
    return matched
