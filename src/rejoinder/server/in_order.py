"""A conversation's messages as one live stream sends them: each once, in ``seq`` order, whatever the hub delivers.

The hub is best effort: an event may come twice (it was also in the replay), late, or not at all. A stream keeps the
``seq`` of the last message it sent; a message at or below it is skipped, and one past a gap is sent after the
missing ones, read from the store. The customer's WebSocket stream and the console's live transcript share this.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from rejoinder.store import MAX_SEQ
from rejoinder.store.conversations import Conversations

REPLAY_PAGE = 500  # messages read from the store at once

# Sends one message item (the API's shape: ``{seq, sender, type, text, …, created_at}``).
Write = Callable[[dict[str, Any]], Awaitable[None]]


def parse_seq(text: str) -> int | None:
    """A message seq written by a client (``?after=``, ``Last-Event-ID``): 0 to MAX_SEQ in ASCII digits, else None.

    Checked before int(), which refuses other digits ("²") and numbers thousands of digits long.
    """
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(MAX_SEQ)):
        return None
    seq = int(text)
    return seq if seq <= MAX_SEQ else None


class InOrder:
    """The ``seq`` of the last message sent to one stream, and the sending that keeps it in order."""

    __slots__ = ("conversation_id", "conversations", "last_seq")

    def __init__(self, conversations: Conversations, conversation_id: str, after: int = 0) -> None:
        self.conversations = conversations
        self.conversation_id = conversation_id
        self.last_seq = after

    async def replay(self, write: Write) -> None:
        """Send every stored message after the last one sent, a page at a time."""
        while True:
            page = await self.conversations.messages_after(self.conversation_id, self.last_seq, REPLAY_PAGE)
            await self.send([record.to_api() for record in page], write)
            if len(page) < REPLAY_PAGE:
                return

    async def send(self, items: Sequence[dict[str, Any]], write: Write) -> None:
        """Send the items not sent yet, in order, after the stored ones missing before them.

        ``last_seq`` moves on with each write, so that it names the last message really sent if one fails.
        """
        for item in items:
            seq = int(item["seq"])
            if seq <= self.last_seq:
                continue
            if seq > self.last_seq + 1:
                missing = await self.conversations.messages_after(
                    self.conversation_id, self.last_seq, seq - 1 - self.last_seq
                )
                for record in missing:
                    await write(record.to_api())
                    self.last_seq = record.seq
            await write(item)
            self.last_seq = seq
