"""The terminal conversation behind ``rejoinder chat``: read lines, take turns, print what the bot says."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

from rejoinder.engine import EngineError, HandledFault
from rejoinder.service import ConversationService, ServiceError, TurnOutcome
from rejoinder.skills import Bot
from rejoinder.store import MessageRecord, Store

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


async def run_chat(bot: Bot, database_url: str, *, event: str | None, resume: str | None) -> int:
    """Talk to ``bot`` on stdin and stdout until the customer leaves or the bot closes; the exit status."""
    # The chat shows every skill fault itself; the service's log lines would only repeat them on stderr.
    logging.getLogger("rejoinder").addHandler(logging.NullHandler())
    store = Store.from_url(database_url)
    await store.upgrade()
    service = ConversationService(store, {bot.id: bot})
    session = _Session(service, bot.id, interactive=sys.stdin.isatty())
    try:
        return await session.run(event=event, resume=resume)
    finally:
        await service.aclose()
        await store.close()


class _Session:
    def __init__(self, service: ConversationService, bot_id: str, *, interactive: bool):
        self.service = service
        self.bot_id = bot_id
        self.interactive = interactive
        self.conversation_id: str | None = None
        self.pending: dict[str, Any] | None = None
        self.status = "active"

    async def run(self, *, event: str | None, resume: str | None) -> int:
        try:
            if resume is not None:
                resumed = await self.service.resume(self.bot_id, resume.strip(), user_agent="rejoinder-chat")
                self.conversation_id, self.pending, self.status = (
                    resumed.conversation_id,
                    resumed.pending,
                    resumed.status,
                )
                out.print(f"[dim]resumed conversation {resumed.conversation_id}[/dim]")
                for message in resumed.messages:
                    self.show(message, history=True)
            elif event is not None:
                self.take(await self.service.start(self.bot_id, event=event))
        except (ServiceError, EngineError) as exc:
            err.print(f"[red]{escape(str(exc))}[/red]")
            return 1
        if self.interactive:
            out.print("[dim]Type your messages; Ctrl-D to leave.[/dim]")
        while self.status == "active":
            line = await self.read_line()
            if line is None:
                break
            text = line.rstrip("\r\n")
            if not text.strip():
                continue
            try:
                if self.conversation_id is None:
                    self.take(await self.service.start(self.bot_id, text=text), echo=not self.interactive)
                else:
                    self.take(await self.send(text), echo=not self.interactive)
            except (ServiceError, EngineError) as exc:
                err.print(f"[red]{escape(str(exc))}[/red]")
        if self.conversation_id:
            out.print(f"[dim]conversation {self.conversation_id} ({self.status})[/dim]")
        return 0

    async def send(self, text: str) -> TurnOutcome:
        assert self.conversation_id is not None
        choices = (self.pending or {}).get("choices") or []
        if text.strip().isdigit() and 1 <= int(text) <= len(choices):
            return await self.service.send(self.conversation_id, choice=choices[int(text) - 1]["value"])
        return await self.service.send(self.conversation_id, text=text)

    async def read_line(self) -> str | None:
        if self.interactive:
            out.print("[bold cyan]you ›[/bold cyan] ", end="")
        line = await asyncio.to_thread(sys.stdin.readline)
        return line or None

    def take(self, outcome: TurnOutcome, *, echo: bool = True) -> None:
        self.conversation_id = outcome.conversation_id
        self.pending = outcome.pending
        self.status = outcome.status
        for message in outcome.messages:
            if message.sender != "customer" or echo:
                self.show(message)
        for error in outcome.errors:
            if isinstance(error, HandledFault):
                # The skill went on at its on_error: worth knowing while designing, not an error.
                err.print(f"[dim]· handled by on_error: {escape(error)}[/dim]")
            else:
                err.print(f"[yellow]! skill error: {escape(error)}[/yellow]")
        if outcome.status == "closed":
            out.print("[dim]The bot closed the conversation.[/dim]")

    @staticmethod
    def show(message: MessageRecord, *, history: bool = False) -> None:
        style = "dim" if history else ""
        who = {"customer": "[bold cyan]you ›[/bold cyan]", "bot": "[bold green]bot ›[/bold green]"}.get(
            message.sender, "[bold yellow]system ›[/bold yellow]"
        )
        text = escape(str(message.payload.get("text", "")))
        out.print(f"{who} [{style}]{text}[/{style}]" if style else f"{who} {text}")
        buttons = message.payload.get("buttons") or []
        replies = [b for b in buttons if "value" in b]
        for i, button in enumerate(replies, 1):
            out.print(f"      [magenta][{i}][/magenta] {escape(button['label'])}")
        for button in buttons:
            if "url" in button:
                out.print(f"      → {escape(button['label'])}: {escape(button['url'])}")


def show_message(message: MessageRecord) -> None:
    """One stored message as the chat prints it (``rejoinder conversations show`` prints transcripts so)."""
    _Session.show(message)
