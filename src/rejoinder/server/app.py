"""The FastAPI application: routes, middleware, error handlers, and the lifespan that owns the store.

The app is wired here and only here. On start the lifespan applies migrations, records the bots, creates the
realtime hub, the turn service and the skill catalog (which follows skill changes made on other workers);
on shutdown (after uvicorn has let in-flight requests finish) it stops the catalog and the retention purge, and
closes the hub, the Integrate client and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from rejoinder import __version__
from rejoinder.config import Settings
from rejoinder.realtime import create_hub
from rejoinder.retention import purge_loop
from rejoinder.server import admin, assets, client_api, console, errors, skill_catalog, stream, widget_config
from rejoinder.server.admission import Admission
from rejoinder.server.body import BodyDeadline
from rejoinder.server.cors import ServerCors
from rejoinder.server.errors import PROBLEM_MEDIA_TYPE, BodyLimit
from rejoinder.server.ops import probes
from rejoinder.server.ops.access_log import AccessLog
from rejoinder.server.ops.metrics import MeteredIntegrationClient, Metrics
from rejoinder.server.quotas import Quotas
from rejoinder.server.ratelimit import ResumeGuard
from rejoinder.server.skill_catalog import SkillCatalog
from rejoinder.server.socket_quota import SocketQuota
from rejoinder.service import ConversationService
from rejoinder.service.keys import Keys
from rejoinder.service.stats import flush_logged, flush_loop
from rejoinder.skills import Bot, load_bot
from rejoinder.store import Store

# Bot directories for worker processes started by `rejoinder serve --workers N` (os.pathsep-separated).
BOT_DIRS_ENV = "REJOINDER_SERVE_BOT_DIRS"

# Routers of the admin API and the WebSocket stream, included when present.
_DESCRIPTION = (
    "Resumable chatbot conversations. Errors are RFC 9457 `application/problem+json` documents with a stable "
    "`type` slug. Credentials travel as `Authorization: Bearer <key or session>`."
)


class _App(FastAPI):
    """The app; WebSockets go straight to the router.

    The HTTP middleware (body limit, CORS, access log) has nothing to do for a socket, and each layer it passes
    through stays in the memory of every idle connection for as long as it is open.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            scope["app"] = self
            await self.router(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    bots: Mapping[str, Bot],
    *,
    store: Store,
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    resume_guard: ResumeGuard | None = None,
) -> FastAPI:
    """The server for ``bots`` on ``store`` (which the app closes on shutdown)."""
    environment: Mapping[str, str] = os.environ if environ is None else environ
    metrics = Metrics()
    # Failed-resume counters, shared through Redis when it is configured; one given by the caller stays open.
    guard = resume_guard or ResumeGuard.for_redis(settings.redis_url)
    quotas = Quotas.from_settings(settings)
    accounts, accounts_redis = console.accounts_for(store, settings)
    keys = Keys(store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.upgrade()
        now = datetime.now(UTC)
        for bot in bots.values():
            await store.bots.upsert_bot(
                bot.id, bot.config.name, bot.version, bot.config.model_dump(mode="json"), now
            )
        hub = create_hub(settings.redis_url)
        service = ConversationService(
            store,
            bots,
            http=MeteredIntegrationClient(metrics),
            environ=environment,
            hub=hub,
            turn_time_budget=settings.turn_time_budget,
        )
        catalog = SkillCatalog(store.bots, service, bots, service.clock)
        for bot_id in bots:
            await catalog.sync(bot_id)
        app.state.hub = hub
        app.state.service = service
        app.state.skill_catalog = catalog
        background = [
            asyncio.create_task(catalog.follow(skill_catalog.SYNC_INTERVAL)),
            asyncio.create_task(flush_loop(service.meter, store)),
        ]
        if settings.purge_interval > 0 and any(bot.config.retention for bot in bots.values()):
            background.append(asyncio.create_task(purge_loop(store, bots, settings.purge_interval)))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await flush_logged(service.meter, store)
            await quotas.aclose()
            if accounts_redis is not None:
                await accounts_redis.aclose()
            await hub.close()
            await service.aclose()
            await keys.settled()
            await store.close()
            if resume_guard is None:
                await guard.aclose()

    app = _App(
        title="rejoinder",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "client", "description": "What the web widget calls (SDK key, then a session)."},
            {
                "name": "admin",
                "description": "Skills, conversations, tokens, API keys and audit (secret key).",
            },
            {"name": "operations", "description": "Health, readiness and metrics."},
        ],
    )
    app.state.store = store
    app.state.bots = dict(bots)
    app.state.settings = settings
    app.state.environ = environment
    app.state.metrics = metrics
    app.state.resume_guard = guard
    app.state.socket_quota = SocketQuota(settings.max_sockets_per_ip, settings.max_sockets_per_session)
    app.state.quotas = quotas
    app.state.accounts = accounts
    app.state.keys = keys

    errors.install(app)
    app.include_router(client_api.router)
    app.include_router(admin.router)
    app.include_router(stream.router)
    app.include_router(probes.router)
    app.include_router(assets.router)
    app.include_router(widget_config.router)
    console.install(app)

    # Added innermost first: the access log sees every answer, CORS headers reach even a 413 or a busy 503, and
    # a request takes an admission slot only once its whole body is in; the console's security headers are on
    # every answer under /dashboard, the body limit's and admission's refusals included (a browser asking for a
    # console page gets them as the console's HTML page).
    app.add_middleware(Admission, limit=settings.max_concurrent_requests, max_wait=settings.queue_timeout)
    app.add_middleware(BodyDeadline, timeout=settings.request_body_timeout)
    app.add_middleware(BodyLimit, limit=errors.MAX_BODY_BYTES)
    app.add_middleware(console.ConsoleHtmlProblems)
    app.add_middleware(console.ConsoleHeaders)
    app.add_middleware(
        ServerCors, allowed_origins={origin for bot in bots.values() for origin in bot.config.allowed_origins}
    )
    app.add_middleware(AccessLog, metrics=metrics)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _problem_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def load_bots(paths: Iterable[str | Path]) -> dict[str, Bot]:
    """Load and validate bot directories; raises :class:`~rejoinder.skills.BotLoadError` or ValueError."""
    loaded: dict[str, Bot] = {}
    for path in paths:
        bot = load_bot(path)
        if bot.id in loaded:
            raise ValueError(f"two bot directories have the id {bot.id!r}; bot ids must be unique per server")
        loaded[bot.id] = bot
    return loaded


def app_from_env() -> FastAPI:
    """An app for the bot directories in ``REJOINDER_SERVE_BOT_DIRS`` (the uvicorn factory of workers)."""
    dirs = [part for part in os.environ.get(BOT_DIRS_ENV, "").split(os.pathsep) if part]
    if not dirs:
        raise RuntimeError(f"set {BOT_DIRS_ENV} to the bot directories to serve")
    settings = Settings()
    app = create_app(load_bots(dirs), store=Store.from_url(settings.database_url), settings=settings)
    spare_from_full_collections()
    return app


def spare_from_full_collections() -> None:
    """Move everything alive now (modules, bots, the app) out of reach of the cyclic garbage collector.

    For a server process that builds its one app: those objects live as long as the process, and a full
    collection that walks them all stalls the event loop for tens of milliseconds every few seconds under load.
    """
    gc.collect()
    gc.freeze()


def _problem_openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with every error answer described as a problem document."""
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    problem = {"$ref": "#/components/schemas/ProblemDocument"}
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": problem}}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    # FastAPI's own validation-error schemas are replaced by ProblemDocument above.
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    return schema
