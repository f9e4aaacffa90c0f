"""``rejoinder keys create|list|revoke|rotate``: a bot's SDK keys and secret keys in the configured database.

A new secret is printed once; only its hash is stored. Every change is audited as made by ``cli``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from rejoinder.cli.configured import fail, on_store
from rejoinder.cli.typer_app import new_app

if TYPE_CHECKING:
    from rejoinder.service.keys import Keys

app = new_app(help="SDK and secret keys: create, list, revoke, rotate.")

T = TypeVar("T")

BotDir = Annotated[Path, typer.Argument(help="The bot directory (with rejoinder.yaml).")]
KeyId = Annotated[str, typer.Argument(help="The key's id, key_… (from `rejoinder keys list`).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@app.command("create")
def create(bot_dir: BotDir, as_json: AsJson = False) -> None:
    """Create an SDK key and a secret key for a bot and print them once (the bot's other keys go on working)."""
    from rejoinder.service.accounts import CLI_ACTOR

    bot_id = _bot_id("create", bot_dir)
    issued = _run("create", lambda keys: keys.create(bot_id, CLI_ACTOR))
    if as_json:
        _print_json(
            {
                "bot": issued.bot_id,
                "sdk_key": issued.sdk_key,
                "secret_key": issued.secret_key,
                "sdk_key_id": issued.sdk_record.id,
                "secret_key_id": issued.secret_record.id,
            }
        )
        return
    typer.echo(f"Keys for bot {issued.bot_id} (shown only this once; only their hashes are stored):")
    typer.echo(f"  SDK key (web pages, allowed origins only): {issued.sdk_key}  ({issued.sdk_record.id})")
    typer.echo(
        f"  secret key (your servers only):            {issued.secret_key}  ({issued.secret_record.id})"
    )


@app.command("list")
def list_keys(bot_dir: BotDir, as_json: AsJson = False) -> None:
    """List a bot's keys: id, kind, status (active, retiring, revoked), when made, when they stop(ped)."""
    from rejoinder.service.keys import key_status, key_summary
    from rejoinder.service.shared import utcnow

    bot_id = _bot_id("list", bot_dir)
    records = _run("list", lambda keys: keys.list(bot_id))
    now = utcnow()
    if as_json:
        _print_json({"bot": bot_id, "items": [key_summary(record, now) for record in records]})
        return
    if not records:
        typer.echo(f"Bot {bot_id} has no keys. Create them with `rejoinder keys create {bot_dir}`.")
        return
    typer.echo(
        f"{'id':<28}  {'kind':<6}  {'status':<8}  {'created (UTC)':<19}  {'last used (UTC)':<19}  stops (UTC)"
    )
    for record in records:
        stops = _moment(record.revoked_at) if record.revoked_at else "-"
        used = _moment(record.last_used_at) if record.last_used_at else "never"
        status = key_status(record, now)
        typer.echo(
            f"{record.id:<28}  {record.kind:<6}  {status:<8}  {_moment(record.created_at):<19}  {used:<19}  {stops}"
        )


@app.command("revoke")
def revoke(key_id: KeyId, as_json: AsJson = False) -> None:
    """Revoke a key now: requests with it are refused (on every server within 10 seconds)."""
    from rejoinder.service.accounts import CLI_ACTOR
    from rejoinder.service.keys import key_summary
    from rejoinder.service.shared import utcnow

    record = _run("revoke", lambda keys: keys.revoke(key_id, CLI_ACTOR))
    if as_json:
        _print_json(key_summary(record, utcnow()))
        return
    typer.echo(
        f"Revoked {record.kind} key {record.id} of bot {record.bot_id} (at {_moment(record.revoked_at)} UTC)."
    )


@app.command("rotate")
def rotate(
    key_id: KeyId,
    overlap: Annotated[
        str,
        typer.Option(
            help="How long the old key goes on working beside the new one: '0', '30m', '24h', '7d'."
        ),
    ] = "24h",
    as_json: AsJson = False,
) -> None:
    """Replace a key with a new one of its kind, printed once; the old key works for the overlap, then stops."""
    from rejoinder.service.accounts import CLI_ACTOR
    from rejoinder.service.keys import key_summary
    from rejoinder.service.shared import utcnow

    length = _overlap(overlap)
    rotated = _run("rotate", lambda keys: keys.rotate(key_id, CLI_ACTOR, overlap=length))
    if as_json:
        now = utcnow()
        _print_json(
            {"key": rotated.secret}
            | key_summary(rotated.key, now)
            | {"replaces": key_summary(rotated.retired, now)}
        )
        return
    label = "SDK key" if rotated.key.kind == "sdk" else "secret key"
    typer.echo(f"New {label} for bot {rotated.key.bot_id} (shown only this once; only its hash is stored):")
    typer.echo(f"  {rotated.secret}  ({rotated.key.id})")
    typer.echo(
        f"The old key {rotated.retired.id} stops working at {_moment(rotated.retired.revoked_at)} UTC."
    )


def _bot_id(command: str, bot_dir: Path) -> str:
    from rejoinder.skills import BotLoadError, load_bot

    try:
        return load_bot(bot_dir).id
    except BotLoadError as exc:
        _fail(command, str(exc))


def _overlap(text: str) -> timedelta:
    from rejoinder.service.keys import MAX_OVERLAP
    from rejoinder.skills.model import parse_duration

    if text.strip() in {"0", "0s", "0m", "0h", "0d"}:
        return timedelta(0)
    try:
        length = parse_duration(text.strip())
    except (ValueError, OverflowError) as exc:
        _fail("rotate", f"--overlap: {exc}")
    if length > MAX_OVERLAP:
        _fail("rotate", f"--overlap: at most {MAX_OVERLAP.days} days, got {text!r}")
    return length


def _run(command: str, action: Callable[[Keys], Awaitable[T]]) -> T:
    """``action`` on the keys of the configured database; a refusal or an unreachable database is a clear error."""
    from rejoinder.service.keys import Keys

    return on_store(f"keys {command}", lambda store: action(Keys(store)))


def _moment(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "-"


def _print_json(value: dict[str, Any]) -> None:
    typer.echo(json.dumps(value))


def _fail(command: str, reason: str) -> NoReturn:
    fail(f"keys {command}", reason)
