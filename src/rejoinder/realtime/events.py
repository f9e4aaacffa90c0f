"""The events that travel through the hub, and the bridge from the turn service's commits to the hub.

``message``, ``typing`` and ``status`` events are what a stream sends to its client, as they are.
``sessions_ended`` is for the streams themselves: it tells them to close sockets whose session just ended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rejoinder.realtime.hub import Event

if TYPE_CHECKING:
    from rejoinder.store.records import MessageRecord

CLIENT_EVENT_TYPES = frozenset({"message", "typing", "status"})
SESSIONS_ENDED = "sessions_ended"


def message_event(record: MessageRecord) -> Event:
    """A stored message as the stream sends it: ``{"type": "message", "message": {seq, sender, type, …}}``."""
    return {"type": "message", "message": record.to_api()}


def typing_event() -> Event:
    """The bot is working on a turn of this conversation."""
    return {"type": "typing"}


def status_event(status: str, pending: dict[str, Any] | None, last_seq: int) -> Event:
    """Where the conversation stands: ``active``/``closed``, what the bot waits for, the newest ``seq``."""
    return {"type": "status", "status": status, "pending": pending, "last_seq": last_seq}


def sessions_ended_event(reason: str, *, token_id: str | None = None, session_id: str | None = None) -> Event:
    """Sessions of this conversation ended: the one ``session_id``, those opened with ``token_id``, or all."""
    return {"type": SESSIONS_ENDED, "reason": reason, "token_id": token_id, "session_id": session_id}
