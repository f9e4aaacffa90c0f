"""``rejoinder conversations …``: list a bot's conversations, show one (transcript, variables, what it waits for),
erase one. On the configured database, through the service; an erasure is audited as made by ``cli``."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rejoinder.cli.configured import fail
from rejoinder.cli.operator import iso, parse_since, print_json, print_table, run, when
from rejoinder.cli.typer_app import new_app

if TYPE_CHECKING:
    from rejoinder.service import ConversationService
    from rejoinder.service.admin import ConversationView
    from rejoinder.store import ConversationRecord
    from rejoinder.store.records import ConversationSummary

app = new_app(help="A bot's conversations: list, show, erase.")

MAX_LIMIT = 500


class Status(StrEnum):
    active = "active"
    closed = "closed"


@app.command("list")
def list_conversations(
    bot_dir: Annotated[Path, typer.Argument(help="The bot directory (with rejoinder.yaml).")],
    status: Annotated[Status | None, typer.Option("--status", help="Only active or closed ones.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Updated since: a duration back (24h, 7d) or an ISO time.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_LIMIT, help="How many, at most.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
) -> None:
    """List the bot's conversations, most recently updated first."""
    from rejoinder.service.admin import ConversationFilters

    filters = ConversationFilters(status=status.value if status else None, updated_after=parse_since(since))
    page = run(
        "conversations list",
        bot_dir,
        lambda service, bot_id: service.list_conversations(bot_id, filters, limit=limit),
    )
    if as_json:
        print_json([_summary(conversation) for conversation in page.items])
        return
    if not page.items:
        typer.echo("No conversations.")
        return
    print_table(
        f"Conversations ({len(page.items)}{', more with a higher --limit' if page.next_cursor else ''})",
        ["Id", "Status", "Skill", "Node", "Messages", "Started (UTC)", "Updated (UTC)"],
        [
            [
                c.id,
                c.status,
                c.skill_id or "",
                c.node_id or "",
                str(c.last_seq),
                when(c.created_at),
                when(c.updated_at),
            ]
            for c in page.items
        ],
    )


@app.command("show")
def show(
    conversation_id: Annotated[str, typer.Argument(help="The conversation's id (cnv_…).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show a conversation: its transcript as the chat shows it, its variables and what it waits for."""
    view = run(
        "conversations show", None, lambda service, _: service.view_conversation(None, conversation_id)
    )
    if as_json:
        print_json(_view_json(view))
        return
    from rich.console import Console
    from rich.markup import escape

    from rejoinder.cli.chat_session import show_message

    conversation = view.conversation
    out = Console(soft_wrap=True, highlight=False, emoji=False)
    out.print(
        f"[bold]{escape(conversation.id)}[/bold] · bot {escape(conversation.bot_id)} · {conversation.status}"
        f" · started {when(conversation.created_at)} UTC · updated {when(conversation.updated_at)} UTC"
    )
    for message in view.messages:
        show_message(message)
    if view.next_after is not None:
        out.print(f"[dim]… the transcript goes on after message {view.next_after}[/dim]")
    out.print("[bold]Variables[/bold]")
    if not view.variables:
        out.print("  (none)")
    for name, value in sorted(view.variables.items()):
        out.print(f"  {escape(name)} = {escape(_short(value))}")
    if view.pending:
        out.print(f"[bold]Waiting for[/bold] {escape(_short(view.pending))}")
    else:
        out.print("[bold]Waiting for[/bold] nothing")


@app.command("erase")
def erase(
    conversation_id: Annotated[str, typer.Argument(help="The conversation's id (cnv_…).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Erase without asking.")] = False,
) -> None:
    """Erase a conversation with its messages, tokens and sessions (the audit trail keeps that it was erased)."""
    from rejoinder.service.accounts import CLI_ACTOR

    if not yes:
        if not _interactive():
            fail("conversations erase", "refusing to erase without --yes: standard input is not a terminal")
        if not typer.confirm(
            f"Erase {conversation_id} with its messages, tokens and sessions? It cannot be undone"
        ):
            typer.echo("Nothing erased.")
            raise typer.Exit(1)

    async def erase_it(service: ConversationService, _: str) -> None:
        conversation = await service.conversation_of(None, conversation_id)
        await service.erase_conversation(conversation.bot_id, conversation_id, CLI_ACTOR)

    run("conversations erase", None, erase_it)
    typer.echo(f"Erased {conversation_id}.")


def _summary(conversation: ConversationRecord | ConversationSummary) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "bot_id": conversation.bot_id,
        "status": conversation.status,
        "skill_id": conversation.skill_id,
        "node_id": conversation.node_id,
        "messages": conversation.last_seq,
        "user": conversation.user,
        "created_at": iso(conversation.created_at),
        "updated_at": iso(conversation.updated_at),
    }


def _view_json(view: ConversationView) -> dict[str, Any]:
    return {
        **_summary(view.conversation),
        "bot_version": view.bot_version,
        "variables": view.variables,
        "pending": view.pending,
        "messages": [message.to_api() for message in view.messages],
        "next_after": view.next_after,
    }


def _short(value: Any, limit: int = 200) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _interactive() -> bool:
    return sys.stdin.isatty()
