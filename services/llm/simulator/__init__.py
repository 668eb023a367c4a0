"""A protocol-faithful local LLM simulator speaking the OpenAI wire format, plus the Azure
OpenAI deployment paths and the Anthropic Messages API, so every adapter is tested with its
real SDK.

Deterministic: chat answers are "Echo: <last user message>", embeddings are seeded by sha256 of
the input, images are solid-colour PNGs seeded by the prompt, and token usage uses the same
offline tokenizer as LLMService's CountTokens. Failure models (sim-ratelimit, sim-error,
sim-slow) let tests drive the error paths of real SDKs.
"""

from services.llm.simulator.app import bound_port, create_app, simulator_state, start_simulator
from services.llm.simulator.catalog import MODELS
from services.llm.simulator.keys import SIMULATOR_KEY_NAME, SIMULATOR_KEY_REF, ensure_simulator_key
from services.llm.simulator.state import SimulatorConfig, SimulatorState

__all__ = [
    "MODELS",
    "SIMULATOR_KEY_NAME",
    "SIMULATOR_KEY_REF",
    "SimulatorConfig",
    "SimulatorState",
    "bound_port",
    "create_app",
    "ensure_simulator_key",
    "simulator_state",
    "start_simulator",
]
