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
    turn_time_budget: float = Field(
        default=DEFAULT_TIME_BUDGET,
        gt=0,
        le=30,
        description="seconds the expressions and templates of one conversation turn may run",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
