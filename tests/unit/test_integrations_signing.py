"""Signatures on Integrate calls, as a receiver checks them."""

from __future__ import annotations

import pytest

from rejoinder.integrations.signing import sign, signature_headers, verify_signature

SECRET = b"whsec_test"
NOW = 1_700_000_000


def test_signature_matches_an_independent_hmac_sha256() -> None:
    # Vectors from `printf '<ts>.<body>' | openssl dgst -sha256 -hmac whsec_test`.
    assert sign(SECRET, NOW, b'{"a":1}') == "38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
    assert sign(SECRET, NOW, b"") == "5967f3c560522fa40cf2876ebc3c3a08551dd6959aaade3b413460591895bdcc"


def test_headers_verify_and_fail_when_anything_changes() -> None:
    body = b'{"RESUME_TOKEN":"rjt_abc","user_name":"Ana"}'
    headers = signature_headers(SECRET, body, now=NOW)
    timestamp, header = headers["X-Rejoinder-Timestamp"], headers["X-Rejoinder-Signature"]
    assert timestamp == str(NOW)
    assert header.startswith("v1=")

    assert verify_signature(SECRET, timestamp, body, header, now=NOW + 10)
    assert verify_signature(SECRET.decode(), int(timestamp), body.decode(), header, now=NOW)
    assert not verify_signature(SECRET, timestamp, body.replace(b"Ana", b"Bob"), header, now=NOW)
    assert not verify_signature(SECRET, str(NOW + 1), body, header, now=NOW)
    assert not verify_signature(b"another secret", timestamp, body, header, now=NOW)


def test_old_or_future_timestamps_are_rejected_outside_the_tolerance() -> None:
    header = signature_headers(SECRET, b"x", now=NOW)["X-Rejoinder-Signature"]
    assert verify_signature(SECRET, NOW, b"x", header, now=NOW + 300)
    assert not verify_signature(SECRET, NOW, b"x", header, now=NOW + 301)
    assert not verify_signature(SECRET, NOW, b"x", header, now=NOW - 301)
    assert verify_signature(SECRET, NOW, b"x", header, now=NOW + 3600, tolerance=3600)


def test_any_listed_v1_signature_may_match_during_secret_rotation() -> None:
    good = sign(SECRET, NOW, b"x")
    assert verify_signature(SECRET, NOW, b"x", f"v1={'0' * 64}, v1={good}", now=NOW)
    assert not verify_signature(SECRET, NOW, b"x", f"v0={good}", now=NOW)


@pytest.mark.parametrize(
    ("timestamp", "header"),
    [("yesterday", "v1=00"), (str(NOW), ""), (str(NOW), "v1="), (str(NOW), "v1=é"), (str(NOW), "garbage")],
)
def test_malformed_input_is_false_not_an_exception(timestamp: str, header: str) -> None:
    assert verify_signature(SECRET, timestamp, b"x", header, now=NOW) is False
