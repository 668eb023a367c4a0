"""LLMService knobs (environment prefix MAKOTO_LLM_); mesh-wide settings stay in MeshSettings."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class LlmSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAKOTO_LLM_", extra="ignore")

    # SDK retries of throttled / failed provider calls before the error reaches the caller.
    max_retries: int = 2
    # Ceiling for one provider call; a caller's shorter gRPC deadline wins.
    timeout_seconds: float = 60.0
    # A replaced tenant client (bindings changed) is closed after this, letting in-flight calls end.
    retired_client_grace_seconds: float = 120.0
    # Azure OpenAI api-version when the binding leaves it empty.
    azure_default_api_version: str = "2024-10-21"
