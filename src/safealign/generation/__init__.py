"""Batched generation behind one interface; backends registered by name (transformers, vllm)."""

from safealign.generation.base import (
    Conversation,
    GenerationConfig,
    GenerationRecord,
    Generator,
    get_generator,
    register_generator,
)

__all__ = ["Conversation", "GenerationConfig", "GenerationRecord", "Generator", "get_generator", "register_generator"]
