"""The simulator's models. Failure models answer every endpoint with the failure they name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["chat", "embedding", "image", "any"]
Behaviour = Literal["normal", "ratelimit", "error", "slow"]


@dataclass(frozen=True)
class SimModel:
    id: str
    kind: Kind
    behaviour: Behaviour = "normal"
    # Embedding width (embedding models).
    dims: int = 0
    # Prompt tokens beyond this answer 400 context_length_exceeded (chat models).
    context_window: int = 8192


MODELS: dict[str, SimModel] = {
    m.id: m
    for m in (
        SimModel("sim-chat", "chat"),
        # Answers late (non-stream) or chunk by chunk with a pause (stream): timeouts, cancellation.
        SimModel("sim-slow", "chat", behaviour="slow"),
        SimModel("sim-embed", "embedding", dims=16),
        SimModel("sim-embed-64", "embedding", dims=64),
        SimModel("sim-image", "image"),
        SimModel("sim-ratelimit", "any", behaviour="ratelimit"),
        SimModel("sim-error", "any", behaviour="error"),
    )
}

# Simulated creation time of every model (fixed: answers are deterministic).
MODEL_CREATED = 1_735_689_600  # 2025-01-01T00:00:00Z
