"""Process settings from ``REJOINDER_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from rejoinder.expr.budget import DEFAULT_TIME_BUDGET


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REJOINDER_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./rejoinder.db",
        description="SQLAlchemy URL: sqlite:///path or postgresql://user@host/db (driver suffixes accepted)",
    )
    redis_url: str | None = Field(default=None, description="redis://host:port/db; optional")
    log_level: str = Field(default="info")
    max_concurrent_requests: int = Field(
        default=256, ge=1, description="API requests one worker runs at once; more wait, then get a fast 503"
    )
    queue_timeout: float = Field(
        default=0.5, ge=0, le=60, description="seconds a request waits for a free slot before its 503"
    )
    # Slow or greedy clients: every connection is bounded in time, and every peer in how many it holds.
    request_header_timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="seconds a request's headers may take to arrive, from the connection's opening or the "
        "first byte of a following request; then 408 and the connection is closed",
    )
    max_request_header_bytes: int = Field(
        default=64 * 1024,
        ge=4096,
        le=1024 * 1024,
        description="bytes a request line and headers may take; more gets a 431 and the connection is closed",
    )
    request_body_timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="seconds a request's body may take to arrive once its headers are in; then 408",
    )
    keep_alive_timeout: float = Field(
        default=5.0, gt=0, le=300, description="seconds an idle keep-alive connection stays open"
    )
    max_connections_per_ip: int = Field(
        default=64,
        ge=1,
        description="open connections (WebSockets included) one peer address may hold per worker; "
        "peers trusted to forward client addresses (FORWARDED_ALLOW_IPS) are not capped",
    )
    max_sockets_per_session: int = Field(
        default=4, ge=1, description="open conversation streams one session may hold per worker"
    )
    max_sockets_per_ip: int = Field(
        default=32, ge=1, description="open conversation streams one client address may hold per worker"
    )
    max_frame_bytes: int = Field(
        default=16 * 1024, ge=1024, le=1024 * 1024, description="largest WebSocket message a client may send"
    )

    # Quotas of anonymous clients (SDK key), per sliding window; 0 turns a limit off (docs/operations.md).
    quota_window: float = Field(
        default=60, gt=0, le=86_400, description="seconds the quotas below count over"
    )
    quota_starts_per_ip: int = Field(
        default=20, ge=0, description="conversations one client IP (IPv6: its /64) may start per window"
    )
    quota_starts_per_bot: int = Field(
        default=3000, ge=0, description="conversations all clients together may start with one bot per window"
    )
    quota_messages_per_ip: int = Field(
        default=120, ge=0, description="messages one client IP (IPv6: its /64) may send per window"
    )
    quota_messages_per_bot: int = Field(
        default=30000, ge=0, description="messages all clients together may send to one bot per window"
    )

    # Conversations: how long they are kept, and how long one turn may compute.
    purge_interval: float = Field(
        default=3600,
        ge=0,
        description="seconds between two purges of conversations past their bot's retention; 0: never",
    )
    turn_time_budget: float = Field(
        default=DEFAULT_TIME_BUDGET,
        gt=0,
        le=30,
        description="seconds the expressions and templates of one conversation turn may run",
    )

    # The console (/dashboard): how long a sign-in lasts, and how fast passwords may be guessed.
    console_idle_timeout: float = Field(
        default=1800, gt=0, le=86_400, description="seconds a console session lasts without a request"
    )
    console_session_lifetime: float = Field(
        default=12 * 3600, gt=0, le=30 * 86_400, description="seconds a console session lasts at most"
    )
    console_sign_in_window: float = Field(
        default=900, gt=0, le=86_400, description="seconds the console's failed sign-ins are counted over"
    )
    console_sign_in_failures_per_account: int = Field(
        default=10, ge=1, description="failed sign-ins to one console account per window before it waits"
    )
    console_sign_in_failures_per_ip: int = Field(
        default=50, ge=1, description="failed console sign-ins from one client IP (IPv6: its /64) per window"
    )
    console_password_hashes: int = Field(
        default=2, ge=1, le=64, description="console password hashes one worker computes at once"
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
