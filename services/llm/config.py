"""LLMService knobs (environment prefix MAKOTO_LLM_); mesh-wide settings stay in MeshSettings."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class LlmSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAKOTO_LLM_", extra="ignore")

    # SDK retries of throttled / failed provider calls before the error reaches the caller.
    max_retries: int = 2
    # Ceiling for one provider call; a caller's shorter gRPC deadline wins.
    timeout_seconds: float = 60.0
    # Tenant clients cached at most (least recently used closed first), and for how long before
    # they are rebuilt (credentials re-read). A replaced client closes after its last call.
    max_tenants: int = 256
    client_ttl_seconds: float = 900.0
    # Azure OpenAI api-version when the binding leaves it empty.
    azure_default_api_version: str = "2024-10-21"
