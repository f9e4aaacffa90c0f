"""``rejoinder demo``: the demo shop with the example bot, on a fresh SQLite file, until Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from rejoinder.service.keys import IssuedKeys

# The demo logs only warnings unless REJOINDER_LOG_LEVEL asks for more: the terminal keeps the guide in view.
DEMO_LOG_LEVEL = "warning"
SHUTDOWN_SECONDS = 5
DATABASE_FILE = "demo.db"
# The demo's console account: an owner, with a password drawn afresh for every run (the database is too).
CONSOLE_EMAIL = "owner@demo.example"


@dataclass(frozen=True)
class DemoCredentials:
    """What the demo prints to use it: the bot's keys and the console's sign-in."""

    keys: IssuedKeys
    email: str
    password: str


def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")] = 8000,
) -> None:
    """Run the demo shop with the example bot on a fresh SQLite file (deleted on exit); prints the URL and keys."""
    listener = _listen(host, port)  # first: a busy port is reported at once
    # Imported here so that the other commands start fast.
    import asyncio

    import uvicorn

    from rejoinder.cli.serve import uvicorn_options
    from rejoinder.config import Settings
    from rejoinder.demo import (
        SHOP_PAGE,
        SIGNING_SECRET_ENV,
        ExampleBotMissing,
        create_demo_app,
        demo_bot,
        demo_origins,
        public_url,
        self_url,
    )
    from rejoinder.skills import BotLoadError
    from rejoinder.store import Store

    port = listener.getsockname()[1]
    public = public_url(host, port)
    itself = self_url(listener.getsockname()[0], port)
    try:
        bot = demo_bot(
            origins=demo_origins(host, port),
            allow_hosts=[_host(itself)],
            signing_secret_env=SIGNING_SECRET_ENV,
        )
    except (ExampleBotMissing, BotLoadError) as exc:
        listener.close()
        _fail(str(exc))

    # uvicorn stops gracefully on SIGINT and SIGTERM, then raises the signal again: both must end up as an
    # exception here, so that the database folder is deleted on the way out.
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        with tempfile.TemporaryDirectory(prefix="rejoinder-demo-") as folder:
            database = f"sqlite:///{Path(folder) / DATABASE_FILE}"
            credentials = asyncio.run(_create_credentials(database, bot.id))
            keys = credentials.keys
            settings = Settings(
                database_url=database,
                redis_url=None,
                log_level=os.environ.get("REJOINDER_LOG_LEVEL", DEMO_LOG_LEVEL),
            )
            app = create_demo_app(
                bot,
                store=Store.from_url(database),
                settings=settings,
                sdk_key=keys.sdk_key,
                public_base=public,
                self_base=itself,
            )
            _announce(public + SHOP_PAGE, credentials, public, folder)
            config = uvicorn.Config(app, **uvicorn_options(settings.log_level, SHUTDOWN_SECONDS))
            try:
                uvicorn.Server(config).run(sockets=[listener])
            finally:
                listener.close()
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    typer.echo("rejoinder demo: stopped; the demo database is deleted.")


class _Stopped(Exception):
    """SIGTERM arrived."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, so that a busy port is reported before anything is printed."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind, proto)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
    except OSError as exc:
        # `make run` passes its PORT= on as --port.
        hint = " (try another: --port N, or PORT=N with make run)" if port else ""
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}")
    listener.set_inheritable(True)
    return listener


def _host(base: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(base).hostname or "127.0.0.1"


async def _create_credentials(database: str, bot_id: str) -> DemoCredentials:
    """The bot's keys and an owner account for the console, in the demo's fresh database."""
    import secrets
    from datetime import UTC, datetime

    from rejoinder.service.accounts import CLI_ACTOR, Accounts, SignInLimits
    from rejoinder.service.keys import create_keys
    from rejoinder.store import Store

    store = Store.from_url(database)
    try:
        await store.upgrade()
        keys = await create_keys(store, bot_id, now=datetime.now(UTC))
        password = secrets.token_urlsafe(12)
        await Accounts(store.users, limits=SignInLimits.in_memory()).create_user(
            CONSOLE_EMAIL, "owner", password, CLI_ACTOR
        )
        return DemoCredentials(keys, CONSOLE_EMAIL, password)
    finally:
        await store.close()


def _announce(shop_url: str, credentials: DemoCredentials, base: str, folder: str) -> None:
    echo = typer.echo
    keys = credentials.keys
    echo(f"rejoinder demo: the shop is at {shop_url}")
    echo(f"  SDK key (in the shop's pages): {keys.sdk_key}")
    echo(f"  secret key (admin API):        {keys.secret_key}")
    echo(f"  console:  {base}/dashboard")
    echo(f"    email:    {credentials.email}")
    echo(f"    password: {credentials.password}")
    echo(f"  database: {Path(folder) / DATABASE_FILE} (a fresh SQLite file, deleted on exit with its folder)")
    echo("What to try:")
    echo(
        '  1. Open the shop and click "Ask about my orders": the assistant asks you to log in and gives a link.'
    )
    echo("  2. Follow it and log in with any name: the account page resumes the same chat by its token.")
    echo('  3. The chat says "Welcome back" with your orders. What was said, from the admin API:')
    admin = f'curl -s -H "Authorization: Bearer {keys.secret_key}" {base}/v1/conversations'
    echo(f"     {admin}?limit=1    (the latest conversation; its id is cnv_…)")
    echo(f"     {admin}/ID    (that conversation's transcript, with ID its id)")
    echo("Press Ctrl-C to stop.")


def _fail(reason: str) -> NoReturn:
    typer.echo(f"rejoinder demo: {reason}", err=True)
    raise typer.Exit(1)
