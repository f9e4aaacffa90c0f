"""Typed access to what the app factory keeps on ``app.state`` (for HTTP requests and WebSockets alike)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from starlette.requests import HTTPConnection

if TYPE_CHECKING:
    from rejoinder.realtime import Hub
    from rejoinder.server.ops.metrics import Metrics
    from rejoinder.server.quotas import Quotas
    from rejoinder.server.ratelimit import ResumeGuard
    from rejoinder.server.skill_catalog import SkillCatalog
    from rejoinder.server.socket_quota import SocketQuota
    from rejoinder.service import ConversationService
    from rejoinder.service.keys import Keys
    from rejoinder.store import Store


def service(conn: HTTPConnection) -> ConversationService:
    return cast("ConversationService", conn.app.state.service)


def keys(conn: HTTPConnection) -> Keys:
    return cast("Keys", conn.app.state.keys)


def store(conn: HTTPConnection) -> Store:
    return cast("Store", conn.app.state.store)


def hub(conn: HTTPConnection) -> Hub:
    return cast("Hub", conn.app.state.hub)


def metrics(conn: HTTPConnection) -> Metrics:
    return cast("Metrics", conn.app.state.metrics)


def resume_guard(conn: HTTPConnection) -> ResumeGuard:
    return cast("ResumeGuard", conn.app.state.resume_guard)


def quotas(conn: HTTPConnection) -> Quotas:
    return cast("Quotas", conn.app.state.quotas)


def skill_catalog(conn: HTTPConnection) -> SkillCatalog:
    return cast("SkillCatalog", conn.app.state.skill_catalog)


def socket_quota(conn: HTTPConnection) -> SocketQuota:
    return cast("SocketQuota", conn.app.state.socket_quota)
