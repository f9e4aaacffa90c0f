"""Request bodies in bounded time: a request goes further only once its whole body is in.

Everything after this layer waits for no client. A body that trickles in (a byte every few seconds) costs its
sender a ``408`` and the connection once ``timeout`` seconds have passed, and meanwhile it holds no admission
slot and runs no code: the slot is taken only by a request whose body has been read.
"""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rejoinder.server.errors import Problem


class BodyDeadline:
    """ASGI middleware: read an HTTP request's body within ``timeout`` seconds, then hand it on in one message.

    It sits inside the body limit, which bounds what is held here. Whatever reading the body raised (the limit's
    413) is raised again to the app when it reads the body, so that the app answers it as before.
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError("the body deadline must be positive")
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        first: Message | None = None
        failure: HTTPException | None = None
        try:
            async with asyncio.timeout(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        first = message  # the client left: the app hears of it as it would have
                        break
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                        break
        except TimeoutError:
            detail = f"The request body did not arrive within {self.timeout:g} s."
            slow = Problem(408, "request_timeout", detail, headers={"Connection": "close"})
            await slow.to_response()(scope, receive, send)
            return
        except HTTPException as raised:
            failure = raised
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            if failure is not None:
                raise failure
            assert first is not None
            return first

        await self.app(scope, replay, send)
