"""Every error the server answers, as RFC 9457 ``application/problem+json`` with a stable ``type`` slug.

Handlers cover the framework's own errors (validation, unknown routes, unreadable bodies), the service's
refusals, database outages (503 with ``Retry-After``) and, as a last resort, anything unexpected (a 500 that
never shows internals). Error texts never carry credentials: validation errors drop the offending input.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rejoinder.engine import ConversationClosed, EngineError
from rejoinder.service import (
    ClientMessageIdReused,
    ConversationNotFound,
    MessageTooLong,
    ServiceError,
    SessionRefused,
    TokenNotFound,
    TokenRefused,
    TurnConflict,
    UnknownBot,
)
from rejoinder.service.errors import (
    AccountExists,
    AccountNotFound,
    InvalidAccount,
    InvalidOverlap,
    KeyInUse,
    KeyNotActive,
    KeyNotFound,
    LastOwner,
    SignInRefused,
    SignInThrottled,
)
from rejoinder.store.errors import (
    DuplicateClientMessage,
    InvalidCursor,
    StorageFull,
    StoreError,
    StoreUnavailable,
    VersionConflict,
)

log = logging.getLogger("rejoinder.server")

PROBLEM_MEDIA_TYPE = "application/problem+json"
UNAVAILABLE_RETRY_AFTER = 2  # seconds a client should wait after a 503
MAX_BODY_BYTES = 16 * 1024

TITLES: dict[str, str] = {
    "validation_error": "The request is not valid",
    "malformed_body": "The body is not valid JSON",
    "unsupported_media_type": "The body must be JSON",
    "unauthorized": "Authentication required",
    "forbidden": "Not allowed",
    "origin_not_allowed": "Origin not allowed",
    "not_found": "Not found",
    "conversation_not_found": "Conversation not found",
    "bot_not_found": "Bot not found",
    "method_not_allowed": "Method not allowed",
    "conflict": "Conflict",
    "client_message_id_reused": "Message id already used for another message",
    "too_large": "Too large",
    "rate_limited": "Too many requests",
    "unavailable": "Service unavailable",
    "storage_full": "Storage full",
    "internal": "Internal error",
    "invalid_request": "Invalid request",
    "invalid_cursor": "Invalid cursor",
    "token_malformed": "Malformed conversation token",
    "token_not_found": "Conversation token not found",
    "token_expired": "Conversation token expired",
    "token_revoked": "Conversation token revoked",
    "token_used_up": "Conversation token used up",
    "unknown_event": "Unknown event",
    "conversation_closed": "Conversation closed",
    "invalid_choice": "Invalid choice",
    "variable_not_settable": "Variable not settable",
    "invalid_input": "Invalid input",
    "sign_in_failed": "Sign-in failed",
    "account_exists": "Account exists",
    "account_not_found": "Account not found",
    "invalid_account": "Invalid account",
    "last_owner": "Last owner",
    "key_not_found": "API key not found",
    "key_not_active": "API key not active",
    "key_in_use": "API key in use",
    "invalid_overlap": "Invalid overlap",
}

# The slug a bare HTTP status gets when the framework raises it without one of ours.
_STATUS_TYPES = {
    400: "malformed_body",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


class FieldError(BaseModel):
    """One invalid field of a request."""

    field: str = Field(description="Where the error is, e.g. `body.user.id` or `query.limit`.")
    message: str
    type: str = Field(
        description="The validator that refused the value, e.g. `missing` or `extra_forbidden`."
    )


class ProblemDocument(BaseModel):
    """An RFC 9457 problem: ``type`` is a stable slug, ``detail`` says what to do about it."""

    type: str = Field(examples=["token_expired"])
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = Field(default=None, description="Field errors (validation_error only).")


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(
        self,
        status: int,
        type: str,
        detail: str,
        *,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
        errors: Sequence[FieldError] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.type = type
        self.detail = detail
        self.title = title or TITLES.get(type) or type.replace("_", " ").capitalize()
        self.headers = dict(headers or {})
        self.errors = list(errors) if errors is not None else None

    def to_response(self) -> JSONResponse:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = [error.model_dump() for error in self.errors]
        return JSONResponse(
            body, status_code=self.status, headers=self.headers, media_type=PROBLEM_MEDIA_TYPE
        )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting a route's problem answers."""
    return {
        status: {"model": ProblemDocument, "description": _describe(status)}
        for status in sorted(set(statuses))
    }


# The HTTP status of each service refusal; any other ServiceError is a 400. WebSocket error frames carry the
# same problem type and detail (see problem_for).
SERVICE_STATUS: dict[type[ServiceError], int] = {
    ConversationNotFound: 404,
    UnknownBot: 404,
    TokenNotFound: 404,
    TurnConflict: 409,
    ClientMessageIdReused: 409,
    MessageTooLong: 413,
    SignInRefused: 401,
    AccountExists: 409,
    AccountNotFound: 404,
    InvalidAccount: 400,
    LastOwner: 409,
    KeyNotFound: 404,
    KeyNotActive: 409,
    KeyInUse: 409,
    InvalidOverlap: 422,
}


def problem_for(error: Exception) -> Problem | None:
    """The problem a refusal of the service, the engine or the store answers with; None for anything else.

    One table for both edges: HTTP answers it as a problem document, the stream as an error frame.
    """
    if isinstance(error, SessionRefused):
        if error.code == "forbidden":
            return Problem(403, "forbidden", str(error))
        return Problem(401, "unauthorized", str(error), headers={"WWW-Authenticate": "Bearer"})
    if isinstance(error, SignInThrottled):
        seconds = max(math.ceil(error.retry_after), 1)
        return Problem(429, error.code, str(error), headers={"Retry-After": str(seconds)})
    if isinstance(error, TokenRefused):
        return Problem(error.outcome.http_status, error.code, str(error))
    if isinstance(error, ServiceError):
        return Problem(SERVICE_STATUS.get(type(error), 400), error.code, str(error))
    if isinstance(error, EngineError):
        return Problem(409 if isinstance(error, ConversationClosed) else 400, error.code, str(error))
    if isinstance(error, StorageFull):
        log.error("database storage full: %s", error)
        return storage_full()
    if isinstance(error, StoreUnavailable):
        log.warning("database unavailable: %s", error)
        return unavailable()
    if isinstance(error, InvalidCursor):
        return Problem(400, "invalid_cursor", str(error))
    if isinstance(error, (VersionConflict, DuplicateClientMessage)):
        return Problem(
            409, "conflict", "The conversation changed at the same moment; send the request again."
        )
    return None


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""
    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    for refusal in (ServiceError, EngineError, StoreError):
        app.add_exception_handler(refusal, _refused)
    app.add_exception_handler(Exception, _internal)


def unavailable(detail: str = "The database is not reachable right now. Try again shortly.") -> Problem:
    return Problem(503, "unavailable", detail, headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)})


def storage_full() -> Problem:
    return Problem(
        503,
        "storage_full",
        "The server's storage is full: nothing was saved. Try again later; the operator has to free space.",
        headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
    )


def write_failed(error: StoreUnavailable) -> Problem:
    """The 503 of a store whose writes fail: for a full disk, or for any other reason."""
    if isinstance(error, StorageFull):
        return storage_full()
    return unavailable("The database answers but its writes fail right now. Try again shortly.")


# ------------------------------------------------------------------------------------------------ handlers


async def _problem(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return exc.to_response()


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "invalid JSON")
            position = error["loc"][-1] if error.get("loc") else "?"
            return Problem(
                400, "malformed_body", f"The body is not valid JSON: {reason} at position {position}."
            ).to_response()
    if _body_not_json(request, errors):
        return Problem(
            415,
            "unsupported_media_type",
            "Send the body as JSON with the header Content-Type: application/json.",
        ).to_response()
    fields = [
        FieldError(
            field=".".join(str(part) for part in error.get("loc", ())),
            message=str(error["msg"]).removeprefix("Value error, "),
            type=error["type"],
        )
        for error in errors
    ]
    summary = "; ".join(f"{field.field}: {field.message}" for field in fields[:3])
    more = f" (and {len(fields) - 3} more)" if len(fields) > 3 else ""
    return Problem(
        422, "validation_error", f"Fix these fields: {summary}{more}.", errors=fields
    ).to_response()


async def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    kind = _STATUS_TYPES.get(status, "invalid_request" if status < 500 else "internal")
    detail = {
        "malformed_body": "The body could not be read: send UTF-8 encoded JSON.",
        "not_found": "There is no such resource. Check the path against /openapi.json.",
        "method_not_allowed": "This path does not accept this method. Check /openapi.json.",
    }.get(kind, str(exc.detail))
    return Problem(status, kind, detail, headers=exc.headers).to_response()


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    problem = problem_for(exc)
    if problem is None:
        return await _internal(request, exc)
    return problem.to_response()


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return Problem(
        500, "internal", "Something went wrong on the server. It was logged; try again."
    ).to_response()


def _body_not_json(request: Request, errors: Sequence[Mapping[str, Any]]) -> bool:
    """A body sent without a JSON content type reaches validation as raw bytes; say so instead."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or content_type.endswith("+json"):
        return False
    return any(
        tuple(error.get("loc", ())) == ("body",) and error.get("type") != "missing" for error in errors
    )


def _describe(status: int) -> str:
    return {
        400: "Malformed request (bad JSON, malformed token, invalid input)",
        401: "Missing, unknown or expired credentials",
        403: "Credential not allowed here (wrong origin, wrong key kind, another conversation)",
        404: "Not found",
        409: "Conflict",
        410: "Conversation token expired, revoked or used up",
        413: "Body or message text too large",
        415: "Body not sent as JSON",
        422: "Invalid fields",
        429: "Too many requests (see Retry-After)",
        503: "Database unavailable or its storage full (see Retry-After)",
    }.get(status, "Error")


# ------------------------------------------------------------------------------------------------ body limit


class _BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive``: the framework re-raises HTTP exceptions met while reading a body."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_detail(limit))


MAX_SKILL_BYTES = 256 * 1024
CONSOLE_SKILL_UPLOAD = "/dashboard/skills/upload"
_FORM_ALLOWANCE = 4 * 1024  # the console upload form's other fields and multipart framing


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes (413) without ever holding more than that.

    A declared ``Content-Length`` over the limit is refused before the body is read; a body streamed without
    one is counted as it arrives and refused at the first byte over.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES, skill_limit: int = MAX_SKILL_BYTES) -> None:
        self.app = app
        self.limit = limit
        self.skill_limit = skill_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Skill files are documents, not chat messages: their uploads (admin API, console) get a larger allowance.
        limit = self.limit
        if scope["path"].startswith("/v1/skills"):
            limit = self.skill_limit
        elif scope["path"] == CONSOLE_SKILL_UPLOAD:
            limit = self.skill_limit + _FORM_ALLOWANCE
        if _declared_length(scope) > limit:
            response = Problem(413, "too_large", _too_large_detail(limit)).to_response()
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)


def _declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


def _too_large_detail(limit: int) -> str:
    return f"The request body is larger than the limit of {limit // 1024} KB."
