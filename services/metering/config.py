"""MeteringService's own settings (env prefix MAKOTO_METERING_), beside the mesh-wide ones."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.config import MeshSettings


class MeteringSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAKOTO_METERING_", extra="ignore")

    # SQLAlchemy async URL, e.g. postgresql+asyncpg://user@host/db. Unset: SQLite under data_dir.
    db_url: str | None = None


def database_url(settings: MeshSettings, override: str | None = None) -> str:
    """The store's URL: an explicit override, else MAKOTO_METERING_DB_URL, else the embedded
    SQLite file at data_dir/metering.sqlite3."""
    url = override or MeteringSettings().db_url
    if url:
        return url
    path = (settings.data_dir / "metering.sqlite3").resolve()
    return f"sqlite+aiosqlite:///{path}"
