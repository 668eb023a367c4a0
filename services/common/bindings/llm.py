"""LLM provider bindings: what each provider needs that no secret decides, and its defaults.

Endpoint "" means the platform's own LLM endpoint (the simulator in development), reached with
the platform's key DEFAULT_LLM_KEY_REF; any other endpoint is the tenant's and must be on the
provider's host list (egress.py) and use the tenant's own key (secret_scope.py).
"""

from __future__ import annotations

from makoto.tenant.v1 import tenant_pb2

# Embedded defaults of a tenant that brings no LLM binding.
DEFAULT_CHAT_MODEL = "sim-chat"
DEFAULT_EMBEDDING_MODEL = "sim-embed"
DEFAULT_IMAGE_MODEL = "sim-image"
DEFAULT_LLM_KEY_REF = "local://llm-simulator-key"


def openai_violations(binding: tenant_pb2.LlmBinding, prefix: str = "llm") -> list[tuple[str, str]]:
    return []


def anthropic_violations(binding: tenant_pb2.LlmBinding, prefix: str = "llm") -> list[tuple[str, str]]:
    return []


def azure_openai_violations(binding: tenant_pb2.LlmBinding, prefix: str = "llm") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if not binding.endpoint:
        out.append((f"{prefix}.endpoint", "AZURE_OPENAI needs the resource endpoint"))
    if not binding.api_version:
        out.append((f"{prefix}.api_version", "AZURE_OPENAI needs an api_version"))
    return out


def platform_key_refs(binding: tenant_pb2.LlmBinding) -> frozenset[str]:
    """The platform's key may only go to the platform's endpoint."""
    return frozenset({DEFAULT_LLM_KEY_REF}) if not binding.endpoint else frozenset()
