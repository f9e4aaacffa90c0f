"""The operations routes: liveness, readiness and the Prometheus scrape."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from rejoinder.server import state
from rejoinder.server.errors import problem_responses, unavailable, write_failed

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable and takes writes", responses=problem_responses(503))
async def readyz(request: Request) -> dict[str, str]:
    store = state.store(request)
    if not await store.ping():
        raise unavailable()
    failure = store.recent_write_failure()
    if failure is not None:
        raise write_failed(failure.error)
    return {"status": "ready"}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    registry = state.metrics(request)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
