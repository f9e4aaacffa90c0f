"""Matching what a test expects against what happened: globs for strings, listed keys for mappings."""

from __future__ import annotations

import json
import re
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from rejoinder.credentials import SECRET_CHARACTERS, TOKEN_PREFIX
from rejoinder.engine import HttpCall

TOKEN_IN_TEXT = re.compile(f"{TOKEN_PREFIX}{SECRET_CHARACTERS}+")


def mismatch(expected: Any, actual: Any, where: str = "") -> str | None:
    """Why ``actual`` does not match ``expected``, or None when it does.

    A string is a glob (``*``, ``?``, ``[…]``); a mapping matches when every key it lists matches (other keys
    are ignored); a list matches item by item; anything else must be equal (``1`` does not match ``true``).
    """
    label = where or "value"
    if isinstance(expected, str):
        if isinstance(actual, str) and fnmatchcase(actual, expected):
            return None
        return f"{label}: expected {expected!r}, got {_show(actual)}"
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{label}: expected a mapping, got {_show(actual)}"
        for key, wanted in expected.items():
            inner = f"{where}.{key}" if where else str(key)
            if key not in actual:
                return f"{inner}: missing (present: {', '.join(map(str, actual)) or 'nothing'})"
            found = mismatch(wanted, actual[key], inner)
            if found:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return f"{label}: expected {len(expected)} items {_show(expected)}, got {_show(actual)}"
        for i, (wanted, got) in enumerate(zip(expected, actual, strict=True)):
            found = mismatch(wanted, got, f"{where}[{i}]")
            if found:
                return found
        return None
    if expected == actual and isinstance(expected, bool) == isinstance(actual, bool):
        return None
    return f"{label}: expected {_show(expected)}, got {_show(actual)}"


def matches(expected: Any, actual: Any) -> bool:
    return mismatch(expected, actual) is None


def url_matches(pattern: str, call: HttpCall) -> bool:
    """A URL glob against a call's URL; the query string counts only when the pattern has one."""
    return fnmatchcase(full_url(call) if "?" in pattern else _without_query(call.url), pattern)


def full_url(call: HttpCall) -> str:
    """The URL the call requests, its ``query`` parameters included."""
    if not call.query:
        return call.url
    joiner = "&" if urlsplit(call.url).query else "?"
    return f"{call.url}{joiner}{urlencode(call.query)}"


def call_view(call: HttpCall) -> dict[str, Any]:
    """A call as the keys of an ``http_called`` expectation see it."""
    query = dict(parse_qsl(urlsplit(call.url).query))
    query.update(call.query)
    return {
        "method": call.method,
        "url": full_url(call),
        "query": query,
        "headers": {key.lower(): value for key, value in call.headers.items()},
        "json": call.json_body,
        "body": call.content if call.content is not None else _json_text(call.json_body),
    }


def call_mismatch(criteria: dict[str, Any], call: HttpCall) -> str | None:
    """Why a call does not meet an expectation's criteria (see :func:`mismatch`), or None."""
    view = call_view(call)
    for key, wanted in criteria.items():
        if key == "url":
            if not url_matches(wanted, call):
                return f"url: expected {wanted!r}, got {view['url']!r}"
            continue
        if key == "headers":
            wanted = {name.lower(): value for name, value in wanted.items()}
        found = mismatch(wanted, view[key], key)
        if found:
            return found
    return None


def describe_call(call: HttpCall) -> str:
    """``POST http://… {"json": …}`` on one line, conversation tokens shortened to ``rjt_…``."""
    text = f"{call.method} {full_url(call)}"
    if call.json_body is not None:
        text += f" {_json_text(call.json_body)}"
    elif call.content is not None:
        text += f" {call.content!r}"
    return shorten_tokens(text)


def shorten_tokens(text: str) -> str:
    """Conversation tokens are long random strings that say nothing to a reader; show their prefix only."""
    return TOKEN_IN_TEXT.sub(f"{TOKEN_PREFIX}…", text)


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def _show(value: Any) -> str:
    text = (
        json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, dict | list) else repr(value)
    )
    text = shorten_tokens(text)
    return text if len(text) <= 200 else text[:197] + "..."
