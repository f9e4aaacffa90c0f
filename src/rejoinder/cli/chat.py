"""``rejoinder chat``: talk to a bot in the terminal, persisted like any other conversation.

Works interactively and with a pipe: each line on stdin is one customer message. At a question with choices, the
customer may type a choice's label or value, or its number.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from rejoinder.config import get_settings
from rejoinder.engine import EngineError
from rejoinder.skills import BotLoadError, load_bot

if TYPE_CHECKING:
    from rejoinder.service import ConversationService, TurnOutcome
    from rejoinder.store import MessageRecord

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def chat(
    bot_dir: Annotated[Path, typer.Argument(help="The bot directory (with rejoinder.yaml).")],
    event: Annotated[
        str | None, typer.Option("--event", help="Start with the skill this event triggers.")
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Resume the conversation this conversation token belongs to."),
    ] = None,
) -> None:
    """Talk to a bot in the terminal (each line of a piped stdin is one customer message)."""
    if event and resume:
        _fail("use --event or --resume, not both")
    try:
        bot = load_bot(bot_dir)
    except BotLoadError as exc:
        err.print(escape(str(exc)))
        raise typer.Exit(1) from None
    from rejoinder.store import InvalidDatabaseURL, StoreUnavailable
    from rejoinder.store.urls import check_url

    try:
        check_url(get_settings().database_url)
        code = asyncio.run(_chat(bot, event=event, resume=resume))
    except InvalidDatabaseURL as exc:
        _fail(f"REJOINDER_DATABASE_URL: {exc}")
    except StoreUnavailable as exc:
        _fail(f"the database is not available: {exc}")
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


async def _chat(bot: Any, *, event: str | None, resume: str | None) -> int:
    # Imported here so that `rejoinder --help` and the other commands start fast.
    from rejoinder.service import ConversationService
    from rejoinder.store import Store

    store = Store.from_url(get_settings().database_url)
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
        from rejoinder.service import ServiceError

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


def _fail(reason: str) -> None:
    err.print(f"[red]rejoinder chat: {escape(reason)}[/red]")
    raise typer.Exit(1)
