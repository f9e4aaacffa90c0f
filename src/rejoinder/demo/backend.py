"""The demo shop's own backend: what a real shop's servers do in the login-and-resume story.

It keeps, in memory, who each browser (a *visitor*, known by a cookie) is, which chat is theirs, and the
conversation token the bot sent for that chat. The bot calls two endpoints (signed Integrate calls, the same
contract as ``examples/shop/backend.py``):

- ``POST /chat/resume-token`` ``{RESUME_TOKEN, conversation_ref}`` → ``{login_url}``: remember the token;
- ``GET /chat/orders?conversation=`` → ``{customer: {name}, orders}`` once that chat's visitor has logged in.

The shop page tells the backend which chat its visitor started (``POST /visitor/conversation``); the first visitor
to claim a chat owns it. The account page then takes the token (once) to resume the chat.
"""

from __future__ import annotations

import json
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from rejoinder.integrations.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

API_PREFIX = "/demo/shop-api"
VISITOR_COOKIE = "demo_visitor"
ORDERS: tuple[dict[str, str], ...] = (
    {"id": "A-1001", "status": "shipped"},
    {"id": "A-1002", "status": "being packed"},
)
# Enough for any demo; the oldest entries go first when it is reached.
MAX_ENTRIES = 10_000
MAX_ID_LENGTH = 128


@dataclass
class Visitor:
    """One browser of the shop: the name it logged in with and the chat it started last."""

    name: str | None = None
    conversation: str | None = None
    resumed: str | None = None  # the chat whose token its account page has already used


class ShopBackend:
    """The shop's memory: visitors, which visitor owns which chat, and the tokens waiting to resume chats."""

    def __init__(self, login_url: str, signing_secret: bytes | None = None) -> None:
        self.login_url = login_url
        self.signing_secret = signing_secret
        self.visitors: OrderedDict[str, Visitor] = OrderedDict()
        self.owners: OrderedDict[str, str] = OrderedDict()  # conversation id → visitor id
        self.tokens: OrderedDict[str, str] = OrderedDict()  # conversation id → token not yet handed over

    @staticmethod
    def new_visitor_id() -> str:
        return secrets.token_urlsafe(24)

    def visitor(self, visitor_id: str | None) -> Visitor | None:
        return self.visitors.get(visitor_id) if visitor_id else None

    def _visitor(self, visitor_id: str) -> Visitor:
        found = self.visitors.get(visitor_id)
        if found is None:
            found = self.visitors[visitor_id] = Visitor()
            _trim(self.visitors)
        return found

    def remember_token(self, conversation: str, token: str) -> None:
        """The bot sent the token for ``conversation`` (a newer one replaces an older one)."""
        self.tokens[conversation] = token
        self.tokens.move_to_end(conversation)
        _trim(self.tokens)

    def claim(self, visitor_id: str, conversation: str) -> bool:
        """``visitor_id``'s page started ``conversation``; False when another visitor claimed it first."""
        owner = self.owners.setdefault(conversation, visitor_id)
        if owner != visitor_id:
            return False
        _trim(self.owners)
        self._visitor(visitor_id).conversation = conversation
        return True

    def log_in(self, visitor_id: str, name: str) -> None:
        self._visitor(visitor_id).name = name

    def waiting_token(self, visitor_id: str | None) -> bool:
        """Whether a token waits to resume this visitor's chat."""
        visitor = self.visitor(visitor_id)
        return visitor is not None and visitor.conversation in self.tokens

    def take_token(self, visitor_id: str | None) -> str | None:
        """The token that resumes this visitor's chat, handed over once: the page that gets it uses it."""
        visitor = self.visitor(visitor_id)
        if visitor is None or visitor.conversation is None:
            return None
        token = self.tokens.pop(visitor.conversation, None)
        if token is not None:
            visitor.resumed = visitor.conversation
        return token

    def customer(self, conversation: str) -> str | None:
        """The name of the logged-in visitor who owns ``conversation``, if any."""
        visitor = self.visitor(self.owners.get(conversation))
        return visitor.name if visitor is not None else None

    def signed(self, request: Request, body: bytes) -> bool:
        """Whether an Integrate call carries this server's signature (always true without a secret)."""
        if self.signing_secret is None:
            return True
        return verify_signature(
            self.signing_secret,
            request.headers.get(TIMESTAMP_HEADER, ""),
            body,
            request.headers.get(SIGNATURE_HEADER, ""),
        )


def _trim(entries: OrderedDict[str, Any]) -> None:
    while len(entries) > MAX_ENTRIES:
        entries.popitem(last=False)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def backend_router(shop: ShopBackend) -> APIRouter:
    """The backend's endpoints, under :data:`API_PREFIX`."""
    router = APIRouter(prefix=API_PREFIX, include_in_schema=False)

    @router.post("/chat/resume-token")
    async def resume_token(request: Request) -> Response:
        raw = await request.body()
        if not shop.signed(request, raw):
            return _error(401, "bad signature")
        try:
            body = json.loads(raw or b"{}")
            token, conversation = body["RESUME_TOKEN"], body["conversation_ref"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "expected RESUME_TOKEN and conversation_ref")
        if not (_valid_id(token) and _valid_id(conversation)):
            return _error(400, "expected RESUME_TOKEN and conversation_ref as strings")
        shop.remember_token(conversation, token)
        return JSONResponse({"login_url": shop.login_url})

    @router.get("/chat/orders")
    async def orders(request: Request, conversation: str = "") -> Response:
        if not shop.signed(request, b""):
            return _error(401, "bad signature")
        name = shop.customer(conversation)
        if name is None:
            return _error(401, "not logged in")
        return JSONResponse({"customer": {"name": name}, "orders": list(ORDERS)})

    @router.post("/visitor/conversation")
    async def claim(request: Request) -> Response:
        # A JSON body cannot be sent cross-site without a CORS preflight; the cookie is SameSite=Lax as well.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, "send JSON")
        visitor_id = request.cookies.get(VISITOR_COOKIE)
        if not _valid_id(visitor_id):
            return _error(401, "open the shop page first")
        try:
            conversation = json.loads(await request.body()).get("conversation_id")
        except (ValueError, AttributeError):
            conversation = None
        if not _valid_id(conversation):
            return _error(400, "expected conversation_id")
        if not shop.claim(str(visitor_id), conversation):
            return _error(409, "this chat belongs to another visitor")
        return Response(status_code=204)

    return router
