"""The Integrate node's HTTP client: performs an engine ``HttpCall`` and reports an ``HttpResponse``.

Every hop goes through the SSRF guard and then to the very address the guard checked (the URL carries the IP,
the ``Host`` header and the TLS server name carry the host); the connections are pooled by
:mod:`rejoinder.integrations.transport`. This module is the call itself: the request built from the node (token
secrets filled in, headers checked, body signed), retries with back-off, redirects followed hop by hop, and the
response read within its size limit and parsed. Problems with the network or the far end never raise: they
come back as ``HttpResponse.error`` so the skill can route to ``on_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from rejoinder.engine.types import HttpCall, HttpResponse
from rejoinder.integrations.policy import IntegratePolicy
from rejoinder.integrations.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_headers
from rejoinder.integrations.ssrf import (
    DestinationError,
    Refused,
    Resolver,
    check_destination,
    system_resolver,
)
from rejoinder.integrations.transport import ServerNamePools
from rejoinder.tokens import conceal, reveal

log = logging.getLogger("rejoinder.integrations")
# httpx logs every request's full URL at INFO; an Integrate URL may carry a conversation token's secret.
logging.getLogger("httpx").setLevel(logging.WARNING)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
BACKOFF_BASE = 0.2  # seconds before the first retry; doubles each time, with jitter
BACKOFF_CAP = 2.0

# Set by rejoinder alone: a skill cannot change message framing, the Host the guard checked, or the signature.
_MANAGED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
        TIMESTAMP_HEADER.lower(),
        SIGNATURE_HEADER.lower(),
    }
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HEADER_VALUE = re.compile(r"^[\t\x20-\x7e]*$")


class _Failure(Exception):
    """No usable response; ``str()`` is the message for HttpResponse.error."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class _Hop:
    """One request of a call: the first, or one a redirect led to."""

    method: str
    url: httpx.URL
    headers: httpx.Headers  # the node's own headers (content type apart)
    body: bytes
    content_type: str | None
    signed: bool = True
    redirected: bool = False
    carries_token: bool = False  # a conversation token's secret may be in the body

    @property
    def host(self) -> str:
        return self.url.host


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: httpx.Headers
    raw: bytes
    host: str
    charset: str | None


class _Progress:
    """How far the current attempt got, told by httpcore's ``trace`` extension."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.sent = False  # the request may have reached the server: retrying could repeat its effect

    async def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event.endswith("send_request_headers.started"):
            self.sent = True


class IntegrationClient:
    """Performs Integrate calls through one shared connection pool. Close it with :meth:`aclose`."""

    def __init__(
        self, *, transport: httpx.AsyncBaseTransport | None = None, resolver: Resolver | None = None
    ) -> None:
        self._client = httpx.AsyncClient(
            transport=transport if transport is not None else ServerNamePools(),
            follow_redirects=False,  # followed by hand, so that the guard checks every hop
            trust_env=False,  # a proxy would make its own DNS lookup and defeat the guard
            timeout=None,
        )
        self._resolver: Resolver = resolver if resolver is not None else system_resolver

    async def __aenter__(self) -> IntegrationClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._client.aclose()

    async def perform(self, call: HttpCall, policy: IntegratePolicy) -> HttpResponse:
        """Make the call, with its retries, within ``call.timeout * (call.retries + 1)`` seconds in all.

        Each attempt (redirects included) has ``call.timeout`` seconds. Never raises for network or HTTP
        problems.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        method = call.method.upper()
        try:
            first = _first_hop(call)
        except _Failure as invalid:
            return self._finish(call, "-", started, error=str(invalid))

        attempts = max(call.retries, 0) + 1
        deadline = started + call.timeout * attempts
        made = 0
        while True:
            made += 1
            progress = _Progress(first.host)
            attempt_deadline = min(loop.time() + call.timeout, deadline)
            answer: _Answer | None = None
            failure: _Failure | None = None
            try:
                async with asyncio.timeout_at(attempt_deadline):
                    answer = await self._attempt(first, policy, progress, attempt_deadline)
            except TimeoutError:
                failure = _timed_out(progress, method, call.timeout)
            except _Failure as caught:
                failure = caught

            if failure is not None:
                retry, delay = failure.retryable, _backoff(made)
            else:
                assert answer is not None
                retry = answer.status in RETRY_STATUSES
                delay = max(_backoff(made), _retry_after(answer.headers) or 0.0)
            if not retry or made == attempts or loop.time() + delay >= deadline:
                break
            log.debug("integrate %s: attempt %d failed, retrying in %.2f s", call.node_id, made, delay)
            await asyncio.sleep(delay)

        if failure is not None:
            error = str(failure) + (f" (after {made} attempts)" if made > 1 else "")
            return self._finish(call, first.host, started, status=failure.status, error=error)
        assert answer is not None
        try:
            body = _parse_body(answer, call.token_secrets)
        except _Failure as bad:
            return self._finish(call, first.host, started, status=answer.status, error=str(bad))
        return self._finish(call, first.host, started, status=answer.status, body=body)

    async def _attempt(
        self, first: _Hop, policy: IntegratePolicy, progress: _Progress, deadline: float
    ) -> _Answer:
        """Send the call once, following redirects, and read the final response (size-capped)."""
        hop = first
        redirects = 0
        while True:
            progress.host = hop.host
            try:
                response = await self._send(hop, policy, progress, deadline)
                try:
                    if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
                        if redirects == policy.max_redirects:
                            raise _Failure(f"too many redirects (more than {policy.max_redirects})")
                        redirects += 1
                        hop = _follow(hop, response)
                        continue
                    raw = await _read_capped(response, policy.max_response_bytes)
                    return _Answer(
                        response.status_code, response.headers, raw, hop.host, response.charset_encoding
                    )
                finally:
                    await response.aclose()
            except httpx.TimeoutException:
                raise TimeoutError from None  # reported like the attempt's own deadline
            except httpx.HTTPError as exc:
                raise _transport_failure(exc, progress, hop.method) from None

    async def _send(
        self, hop: _Hop, policy: IntegratePolicy, progress: _Progress, deadline: float
    ) -> httpx.Response:
        """Check the hop's destination and send it to a checked address (the next one if connecting fails)."""
        host = hop.url.raw_host.decode("ascii")
        port = hop.url.port or (443 if hop.url.scheme == "https" else 80)
        try:
            addresses = await check_destination(host, port, policy.allow_list, self._resolver)
        except Refused as exc:
            where = f"redirect to {hop.host}: " if hop.redirected else ""
            raise _Failure(f"refused: {where}{exc}") from None
        except DestinationError as exc:
            raise _Failure(str(exc), retryable=exc.retryable) from None

        headers = httpx.Headers({"User-Agent": policy.user_agent})
        headers.update(hop.headers)
        headers["Host"] = hop.url.netloc.decode("ascii")
        if hop.body and hop.content_type:
            headers["Content-Type"] = hop.content_type
        if hop.signed and policy.signing_secret is not None:
            headers.update(signature_headers(policy.signing_secret, hop.body))
        extensions: dict[str, Any] = {"trace": progress.trace}
        if hop.url.scheme == "https":
            extensions["sni_hostname"] = host  # TLS: present and verify the name, not the IP

        for index, address in enumerate(addresses):
            remaining = max(deadline - asyncio.get_running_loop().time(), 0.001)
            try:
                pinned = hop.url.copy_with(host=address)
            except httpx.InvalidURL:
                raise _Failure(f"cannot connect to {host} at {address}") from None
            request = self._client.build_request(
                hop.method,
                pinned,
                headers=headers,
                content=hop.body or None,
                extensions=extensions,
                timeout=httpx.Timeout(remaining),
            )
            try:
                return await self._client.send(request, stream=True)
            except httpx.ConnectError:
                if index == len(addresses) - 1 or progress.sent:
                    raise
                log.debug(
                    "integrate: %s address %d of %d unreachable, trying the next",
                    host,
                    index + 1,
                    len(addresses),
                )
        raise AssertionError("check_destination returns at least one address")

    def _finish(
        self,
        call: HttpCall,
        host: str,
        started: float,
        *,
        status: int | None = None,
        body: Any = None,
        error: str | None = None,
    ) -> HttpResponse:
        elapsed_ms = (asyncio.get_running_loop().time() - started) * 1000
        # Host only: the path, query and body may carry conversation tokens.
        if error is None:
            log.info(
                "integrate %s: %s %s -> %s in %.0f ms", call.node_id, call.method, host, status, elapsed_ms
            )
        else:
            log.warning(
                "integrate %s: %s %s failed in %.0f ms: %s",
                call.node_id,
                call.method,
                host,
                elapsed_ms,
                error,
            )
        return HttpResponse(status=status, body=body, error=error, elapsed_ms=elapsed_ms)


# ----------------------------------------------------------------------------------------- request building


def _check_url(url: httpx.URL) -> None:
    if url.scheme not in ("http", "https"):
        if not url.scheme:
            raise _Failure("the URL is not absolute: it needs http:// or https:// and a host")
        raise _Failure(f"refused: only http and https URLs can be called, not {url.scheme}:")
    if not url.host:
        raise _Failure("the URL has no host")


def with_token_secrets(call: HttpCall) -> HttpCall:
    """The call as it goes out: each reference to a token minted this turn replaced by the token's secret.

    Only the request is built from this; the call the engine made, which a skill may have stored parts of, keeps
    the references.
    """
    secrets = call.token_secrets
    if not secrets:
        return call
    body = call.json_body
    if body is not None:
        # References are made of characters JSON never escapes, so they are found in the JSON text as is.
        # A body that is not JSON is left alone: the request builder refuses it with its own message.
        with contextlib.suppress(TypeError, ValueError, RecursionError):
            body = json.loads(reveal(_json_text(body), secrets))
    return replace(
        call,
        url=reveal(call.url, secrets),
        headers={name: reveal(value, secrets) for name, value in call.headers.items()},
        query={reveal(key, secrets): reveal(value, secrets) for key, value in call.query.items()},
        json_body=body,
        content=reveal(call.content, secrets) if call.content is not None else None,
    )


def _json_text(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _first_hop(call: HttpCall) -> _Hop:
    """The call's first request, validated: URL, headers and body bytes (the bytes that are signed)."""
    call = with_token_secrets(call)
    try:
        url = httpx.URL(call.url)
        _check_url(url)
        if call.query:
            url = url.copy_merge_params(call.query)
    except httpx.InvalidURL:
        raise _Failure("the URL is not valid") from None

    headers = httpx.Headers()
    content_type: str | None = None
    for name, value in call.headers.items():
        if not _HEADER_NAME.match(name) or not _HEADER_VALUE.match(value):
            raise _Failure(
                f"header {name!r} cannot be sent: its name or value has characters HTTP does not allow"
            )
        if name.lower() == "content-type":
            content_type = value
        elif name.lower() not in _MANAGED_HEADERS:
            headers[name] = value

    if call.json_body is not None:
        try:
            body = _json_text(call.json_body).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            raise _Failure(f"the request body cannot be sent as JSON: {exc}") from None
        content_type = content_type or "application/json"
    elif call.content is not None:
        body = call.content.encode("utf-8")
        content_type = content_type or "text/plain; charset=utf-8"
    else:
        body = b""
    return _Hop(call.method.upper(), url, headers, body, content_type, carries_token=bool(call.token_secrets))


def _same_site(old: httpx.URL, new: httpx.URL) -> bool:
    """Same host and port, or the same host moving from http to https on the default ports."""
    if old.raw_host.lower() != new.raw_host.lower():
        return False
    if old.scheme == new.scheme:
        return old.port == new.port
    return old.scheme == "http" and new.scheme == "https" and old.port is None and new.port is None


def _follow(hop: _Hop, response: httpx.Response) -> _Hop:
    """The request a redirect asks for, as browsers and httpx make it."""
    try:
        target = hop.url.join(response.headers["location"])
        _check_url(target)
    except httpx.InvalidURL:
        raise _Failure(f"{hop.host} sent a redirect to an invalid URL") from None
    except _Failure as bad:
        raise _Failure(f"{bad} (redirected from {hop.host})") from None
    follow = replace(hop, url=target, redirected=True)
    status = response.status_code
    if (status == 303 and hop.method != "HEAD") or (status in (301, 302) and hop.method == "POST"):
        follow = replace(follow, method="GET", body=b"", content_type=None)
    if not _same_site(hop.url, target):
        if follow.body and hop.carries_token:
            # A 307/308 would send the body again, and a conversation token in it is meant for the node's host.
            raise _Failure(
                f"{hop.host} redirected the call to {target.host}: a request that carries a conversation "
                "token is not sent on to another site"
            )
        # The node's headers (credentials among them) and the signature are meant for the host the node names.
        follow = replace(follow, headers=httpx.Headers(), signed=False)
    return follow


# ----------------------------------------------------------------------------------------- response handling


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """The decoded body, refusing more than ``limit`` bytes as soon as it is known."""
    declared = response.headers.get("content-length", "")
    if "content-encoding" not in response.headers and declared.isdigit() and int(declared) > limit:
        raise _Failure(f"response larger than {limit} bytes", status=response.status_code)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise _Failure(f"response larger than {limit} bytes", status=response.status_code)
    return bytes(body)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _parse_body(answer: _Answer, secrets: Mapping[str, str]) -> Any:
    """Parsed JSON for a JSON content type (None when empty), else the text.

    A token secret of this turn that the far end echoes comes back as its reference, so that a skill cannot
    save it from the response.
    """
    content_type = answer.headers.get("content-type", "")
    if _is_json(content_type):
        if not answer.raw.strip():
            return None
        try:
            # Decoded as json.loads decodes bytes (UTF-8, -16 or -32), so that secrets can be found in the text.
            text = answer.raw.decode(json.detect_encoding(answer.raw), "surrogatepass")
            return json.loads(conceal(text, secrets))
        except ValueError:
            raise _Failure(f"invalid JSON from {answer.host}", status=answer.status) from None
    try:
        text = answer.raw.decode(answer.charset or "utf-8", errors="replace")
    except LookupError:
        text = answer.raw.decode("utf-8", errors="replace")
    return conceal(text, secrets)


def _retry_after(headers: httpx.Headers) -> float | None:
    """Seconds the server asked to wait (Retry-After as seconds or an HTTP date), if it asked."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _backoff(attempts_made: int) -> float:
    """Exponential back-off with jitter: about 0.2 s, 0.4 s, 0.8 s … capped at 2 s."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempts_made - 1))
    return ceiling * random.uniform(0.5, 1.0)


def _may_retry(progress: _Progress, method: str) -> bool:
    """Safe to try again: the request never left, or repeating it has no further effect."""
    return not progress.sent or method in IDEMPOTENT_METHODS


def _timed_out(progress: _Progress, method: str, timeout: float) -> _Failure:
    return _Failure(
        f"no answer from {progress.host} within {timeout:g} s", retryable=_may_retry(progress, method)
    )


def _transport_failure(exc: httpx.HTTPError, progress: _Progress, method: str) -> _Failure:
    """A short, specific message for a transport problem; no addresses, paths or bodies."""
    host = progress.host
    if isinstance(exc, httpx.ConnectError):
        return _Failure(_connect_reason(exc, host), retryable=True)
    if isinstance(exc, httpx.DecodingError):
        return _Failure(f"could not decode the response from {host}")
    if isinstance(exc, httpx.LocalProtocolError):
        return _Failure(f"the request to {host} could not be sent (malformed request)")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError | httpx.CloseError):
        return _Failure(
            f"the connection to {host} broke before the response was complete",
            retryable=_may_retry(progress, method),
        )
    return _Failure(f"the call to {host} failed ({type(exc).__name__})")


def _connect_reason(exc: BaseException, host: str) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"the TLS certificate of {host} is not valid: {cause.verify_message}"
        if isinstance(cause, ssl.SSLError):
            return f"the TLS handshake with {host} failed"
        if isinstance(cause, ConnectionRefusedError):
            return f"{host} refused the connection"
        cause = cause.__cause__ or cause.__context__
    return f"could not connect to {host}"
