"""What the service refuses, by kind. Each error names its problem type in ``code``; the edges (HTTP, WebSocket)
decide how to answer it, from one table in :mod:`rejoinder.server.errors`."""

from __future__ import annotations

from rejoinder.tokens import TokenOutcome


class ServiceError(Exception):
    """A request the service refuses; ``code`` is the API's problem type."""

    code = "invalid_request"


class ConversationNotFound(ServiceError):
    code = "conversation_not_found"


class UnknownBot(ServiceError):
    code = "bot_not_found"


class TokenNotFound(ServiceError):
    """No token with this id belongs to the bot."""

    code = "token_not_found"


class TurnConflict(ServiceError):
    code = "conflict"


class ClientMessageIdReused(ServiceError):
    """A ``client_message_id`` already answered comes with another message: a client bug, never a replay."""

    code = "client_message_id_reused"


class MessageTooLong(ServiceError):
    code = "too_large"


class SessionRefused(ServiceError):
    """A session that may not take this turn: unknown, ended or expired (``unauthorized``), or another
    conversation's (``forbidden``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TokenRefused(ServiceError):
    """A resume by token failed; ``outcome`` says how (API.md's table)."""

    def __init__(self, outcome: TokenOutcome, message: str):
        super().__init__(message)
        self.outcome = outcome
        self.code = outcome.value
