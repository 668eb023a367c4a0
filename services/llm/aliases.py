"""Model aliases: what "chat", "embedding" and "image" mean for one tenant."""

from __future__ import annotations

from makoto.tenant.v1 import tenant_pb2

from services.common.errors import FailedPrecondition

# alias -> LlmBinding field
ALIASES: dict[str, str] = {"chat": "chat_model", "embedding": "embedding_model", "image": "image_model"}


def resolve_model(binding: tenant_pb2.LlmBinding, requested: str, default_alias: str) -> str:
    """The provider model for a request: an alias (or "" = default_alias) maps through the
    binding; any other name goes to the provider as it is."""
    name = requested or default_alias
    field = ALIASES.get(name)
    if field is None:
        return name
    model = str(getattr(binding, field))
    if not model:
        raise FailedPrecondition(
            f"the tenant's LLM binding defines no {name!r} model", reason="LLM_ALIAS_UNSET"
        )
    return model
