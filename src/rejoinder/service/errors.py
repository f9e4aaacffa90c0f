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


class SignInRefused(ServiceError):
    """A wrong email or password, or a disabled account: the same answer for each, so none can be told apart."""

    code = "sign_in_failed"


class SignInThrottled(ServiceError):
    """Too many failed sign-ins lately, for this account or from this client; ``retry_after`` in seconds."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AccountExists(ServiceError):
    code = "account_exists"


class AccountNotFound(ServiceError):
    code = "account_not_found"


class InvalidAccount(ServiceError):
    """An email, role or password the console does not take (too short a password, an unknown role)."""

    code = "invalid_account"


class LastOwner(ServiceError):
    """The change would leave the console without an owner able to sign in."""

    code = "last_owner"


class KeyNotFound(ServiceError):
    """No API key with this id (belongs to the bot, when a bot's caller asks)."""

    code = "key_not_found"


class KeyNotActive(ServiceError):
    """A key already revoked or retiring cannot be rotated."""

    code = "key_not_active"


class KeyInUse(ServiceError):
    """The caller asked to revoke the very key it calls with, without saying it means to."""

    code = "key_in_use"


class InvalidOverlap(ServiceError):
    """A rotation's overlap is negative or longer than allowed."""

    code = "invalid_overlap"
