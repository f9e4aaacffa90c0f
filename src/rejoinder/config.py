"""Process settings from ``REJOINDER_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REJOINDER_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///./rejoinder.db",
        description="SQLAlchemy URL: sqlite:///path or postgresql://user@host/db (driver suffixes accepted)",
    )
    redis_url: str | None = Field(default=None, description="redis://host:port/db; optional")
    log_level: str = Field(default="info")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
