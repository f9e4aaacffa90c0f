"""``rejoinder audit BOT_DIR``: the bot's audit trail, newest first, as a table, JSON or CSV (the console's
export, a spreadsheet's formulas defused). On the configured database, through the service."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rejoinder.cli.configured import fail
from rejoinder.cli.operator import iso, parse_since, print_json, print_table, run, when

if TYPE_CHECKING:
    from rejoinder.service import ConversationService

MAX_LIMIT = 1000


def audit(
    bot_dir: Annotated[Path, typer.Argument(help="The bot directory (with rejoinder.yaml).")],
    conversation: Annotated[
        str | None, typer.Option("--conversation", help="Only this conversation's events (cnv_…).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Since: a duration back (24h, 7d) or an ISO time.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=MAX_LIMIT, help="How many, at most (not for --csv).")
    ] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV, every matching event.")] = False,
) -> None:
    """Print the bot's audit trail, newest first: resumes, tokens issued and revoked, erasures, console changes."""
    from rejoinder.service.admin import AuditFilters

    if as_json and as_csv:
        fail("audit", "--json and --csv: choose one")
    filters = AuditFilters(conversation_id=conversation, since=parse_since(since))

    if as_csv:

        async def export(service: ConversationService, bot_id: str) -> None:
            async for part in service.export_audit(bot_id, filters):
                typer.echo(part, nl=False)

        run("audit", bot_dir, export)
        return
    page = run("audit", bot_dir, lambda service, bot_id: service.list_audit(bot_id, filters, limit=limit))
    from rejoinder.service.admin import audit_actor

    if as_json:
        print_json(
            [
                {
                    "id": event.id,
                    "at": iso(event.at),
                    "kind": event.kind,
                    "outcome": event.outcome,
                    "actor": audit_actor(event),
                    "conversation_id": event.conversation_id,
                    "token_id": event.token_id,
                    "ip": event.ip,
                    "user_agent": event.user_agent,
                }
                for event in page.items
            ]
        )
        return
    if not page.items:
        typer.echo("No audit events.")
        return
    rows: list[list[Any]] = [
        [
            when(event.at),
            event.kind,
            event.outcome,
            audit_actor(event) or "",
            event.conversation_id or "",
            event.token_id or "",
            event.ip or "",
        ]
        for event in page.items
    ]
    print_table(
        f"Audit trail ({len(page.items)}{', more with a higher --limit' if page.next_cursor else ''})",
        ["At (UTC)", "Kind", "Outcome", "Actor", "Conversation", "Token", "IP"],
        rows,
    )
