"""``rejoinder serve``: run the HTTP server for one or more bots."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from rejoinder.config import Settings

# In-flight requests get this long to finish once a shutdown signal arrives.
GRACEFUL_SHUTDOWN_SECONDS = 30
# How long uvicorn's supervisor waits for a worker to answer its health check (uvicorn's default is 5 s). A new
# worker answers only once its log formatter has imported the server, which on a busy host takes longer than 5 s:
# it would be killed and started again, over and over.
WORKER_HEALTHCHECK_SECONDS = 30


def serve(
    bot_dirs: Annotated[list[Path], typer.Argument(help="Bot directories (each with rejoinder.yaml).")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (use PostgreSQL and Redis for more than one).")
    ] = 1,
    reload: Annotated[
        bool,
        typer.Option(
            "--reload",
            help="Follow edits of the bots' skill files: a change is validated, then served to new conversations.",
        ),
    ] = False,
) -> None:
    """Run the server for bots (database from REJOINDER_DATABASE_URL; migrations are applied on start)."""
    # Imported here so that the other commands start fast.
    import uvicorn
    from sqlalchemy import make_url

    from rejoinder.cli.bot_env import require_env
    from rejoinder.config import Settings
    from rejoinder.server.app import BOT_DIRS_ENV, create_app, load_bots, spare_from_full_collections
    from rejoinder.server.ops.metrics import MULTIPROCESS_DIR_ENV
    from rejoinder.skills import BotLoadError
    from rejoinder.store import InvalidDatabaseURL, Store
    from rejoinder.store.urls import check_url

    try:
        bots = load_bots(bot_dirs)
    except BotLoadError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    except ValueError as exc:
        _fail(str(exc))
    if reload and workers > 1:
        _fail("--reload serves with one worker; leave out --workers")
    settings = Settings()
    try:
        check_url(settings.database_url)
    except InvalidDatabaseURL as exc:
        _fail(f"REJOINDER_DATABASE_URL: {exc}")
    require_env("serve", zip(bot_dirs, bots.values(), strict=True))

    shown_host = f"[{host}]" if ":" in host else host
    typer.echo(f"rejoinder: serving {', '.join(sorted(bots))} at http://{shown_host}:{port}")
    typer.echo(f"rejoinder: database {make_url(settings.database_url).render_as_string(hide_password=True)}")
    options = {
        "host": host,
        "port": port,
        **uvicorn_options(settings.log_level, GRACEFUL_SHUTDOWN_SECONDS, settings),
    }
    if workers == 1:
        app = create_app(bots, store=Store.from_url(settings.database_url), settings=settings)
        if reload:
            from rejoinder.cli.reload import SkillFileWatcher, watch_skill_files

            directories = dict(zip(bots, bot_dirs, strict=True))
            watch_skill_files(app, SkillFileWatcher(directories, report=_report))
            typer.echo("rejoinder: following edits of the skill files (--reload)")
        spare_from_full_collections()
        uvicorn.run(app, **options)
        return
    os.environ[BOT_DIRS_ENV] = os.pathsep.join(str(path.resolve()) for path in bot_dirs)
    # The workers count into shared files, so that a scrape of /metrics sees all of them whichever answers.
    metrics_dir = tempfile.mkdtemp(prefix="rejoinder-metrics-")
    os.environ[MULTIPROCESS_DIR_ENV] = metrics_dir
    try:
        uvicorn.run(
            "rejoinder.server.app:app_from_env",
            factory=True,
            workers=workers,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
            **options,
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def uvicorn_options(
    log_level: str, graceful_shutdown: float, settings: Settings | None = None
) -> dict[str, Any]:
    """How rejoinder runs uvicorn (``serve`` and ``demo``), host and port aside; limits from ``settings``."""
    from rejoinder.config import Settings
    from rejoinder.server.connections import GuardedHttpProtocol, GuardedWebSocketProtocol
    from rejoinder.server.ops.logs import logging_config

    limits = settings or Settings()
    return {
        "log_config": logging_config(log_level),
        "access_log": False,  # requests are logged by the app, without query strings
        "timeout_graceful_shutdown": graceful_shutdown,
        "server_header": False,
        # httptools with a deadline for request headers and a cap on connections per peer (docs/operations.md).
        "http": GuardedHttpProtocol,
        "timeout_keep_alive": limits.keep_alive_timeout,
        # The sans-I/O websockets implementation without compression: an idle socket stays small. The stream
        # has heartbeats of its own (docs/api.md), so protocol pings would only add a timer to every socket.
        "ws": GuardedWebSocketProtocol,
        "ws_max_size": limits.max_frame_bytes,
        "ws_per_message_deflate": False,
        "ws_ping_interval": None,
    }


def _report(line: str) -> None:
    typer.echo(f"rejoinder serve: {line}", err=True)


def _fail(reason: str) -> NoReturn:
    typer.echo(f"rejoinder serve: {reason}", err=True)
    raise typer.Exit(1)
