"""``rejoinder tokens …``: a bot's conversation tokens (list), a new one for a conversation (issue: its secret is
printed once), and revocation. On the configured database, through the service; issue and revoke are audited as
made by ``cli``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rejoinder.cli.operator import OperatorError, iso, print_json, print_table, run, when
from rejoinder.cli.typer_app import new_app

if TYPE_CHECKING:
    from rejoinder.service import ConversationService
    from rejoinder.tokens import TokenRecord

app = new_app(help="Conversation tokens: list, issue, revoke.")

MAX_LIMIT = 500


@app.command("list")
def list_tokens(
    bot_dir: Annotated[Path, typer.Argument(help="The bot directory (with rejoinder.yaml).")],
    conversation: Annotated[
        str | None, typer.Option("--conversation", help="Only this conversation's tokens (cnv_…).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_LIMIT, help="How many, at most.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
) -> None:
    """List the bot's tokens, newest first, with their status now (never their secrets: only hashes are kept)."""
    from datetime import UTC, datetime

    from rejoinder.service.admin import TokenFilters

    filters = TokenFilters(conversation_id=conversation)
    page = run(
        "tokens list", bot_dir, lambda service, bot_id: service.list_tokens(bot_id, filters, limit=limit)
    )
    now = datetime.now(UTC)
    if as_json:
        print_json([_token_json(token, now) for token in page.items])
        return
    if not page.items:
        typer.echo("No tokens.")
        return
    print_table(
        f"Tokens ({len(page.items)}{', more with a higher --limit' if page.next_cursor else ''})",
        ["Id", "Conversation", "Status", "Uses", "Created (UTC)", "Expires (UTC)"],
        [
            [
                token.id,
                token.conversation_id,
                _status(token, now),
                f"{token.uses}/{token.max_uses}" if token.max_uses is not None else str(token.uses),
                when(token.created_at),
                when(token.expires_at),
            ]
            for token in page.items
        ],
    )


@app.command("issue")
def issue(
    conversation_id: Annotated[str, typer.Argument(help="The conversation's id (cnv_…).")],
    ttl: Annotated[
        str | None,
        typer.Option("--ttl", help="How long it lasts (15m, 24h, 7d); the bot's default if not given."),
    ] = None,
    uses: Annotated[
        int | None,
        typer.Option("--uses", min=1, help="How many resumes it allows; the bot's default if not given."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object, the secret in it.")] = False,
) -> None:
    """Issue a token for a conversation and print its secret, this once (only its hash is stored)."""
    from rejoinder.service.accounts import CLI_ACTOR

    secret, token = run(
        "tokens issue",
        None,
        lambda service, _: service.issue_token(conversation_id, ttl=ttl, uses=uses, actor=CLI_ACTOR),
    )
    if as_json:
        print_json({**_token_json(token, token.created_at), "token": secret})
        return
    typer.echo(f"Token {token.id} for {token.conversation_id} (the secret is shown only this once):")
    typer.echo(f"  {secret}")
    limit = (
        f", {token.max_uses} use{'s' if token.max_uses != 1 else ''}" if token.max_uses is not None else ""
    )
    typer.echo(f"  expires {when(token.expires_at)} UTC{limit}")


@app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument(help="The token's id (tok_…).")]) -> None:
    """Revoke a token: it resumes nothing more, and the sessions it opened end."""
    from rejoinder.service.accounts import CLI_ACTOR

    async def revoke_it(service: ConversationService, _: str) -> TokenRecord:
        from rejoinder.service import TokenNotFound

        # A token id names its bot nowhere but in the store: ask each recorded bot, as few as they are.
        for bot_id in sorted(service.bots.ids()):
            try:
                return await service.revoke_token(bot_id, token_id, CLI_ACTOR)
            except TokenNotFound:
                continue
        raise OperatorError(f"no token {token_id!r}")

    token = run("tokens revoke", None, revoke_it)
    typer.echo(f"Revoked {token.id} (conversation {token.conversation_id}).")


def _status(token: TokenRecord, now: Any) -> str:
    from rejoinder.tokens import TokenOutcome, judge

    outcome = judge(token, bot_id=token.bot_id, now=now)
    return {
        TokenOutcome.OK: "active",
        TokenOutcome.REVOKED: "revoked",
        TokenOutcome.EXPIRED: "expired",
        TokenOutcome.USED_UP: "used up",
    }.get(outcome, outcome.value)


def _token_json(token: TokenRecord, now: Any) -> dict[str, Any]:
    return {
        "id": token.id,
        "bot_id": token.bot_id,
        "conversation_id": token.conversation_id,
        "status": _status(token, now).replace(" ", "_"),
        "uses": token.uses,
        "max_uses": token.max_uses,
        "created_at": iso(token.created_at),
        "expires_at": iso(token.expires_at),
        "revoked_at": iso(token.revoked_at),
        "last_used_at": iso(token.last_used_at),
    }
