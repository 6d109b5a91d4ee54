"""The generation interface: conversations in, records with prompt, response, tokens and timings out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from safealign.errors import SafealignError

Conversation = list[dict[str, str]]  # [{"role": "user", "content": ...}, ...]


@dataclass
class GenerationConfig:
    max_new_tokens: int = 128
    """Cap on generated tokens; 128 keeps CPU evaluation affordable and covers a refusal's opening."""
    temperature: float = 0.0
    """0 means greedy decoding; > 0 samples."""
    top_p: float = 1.0
    batch_size: int = 16
    """Prompts per forward pass; 16 measured fastest for the 135M model on 2 CPU cores."""
    seed: int = 0
    system_prompt: str | None = None
    """Prepended as a system turn when set (context distillation preprompts use this)."""
    chat: bool = True
    """Apply the chat template; False continues raw text (BOLD, ToxiGen continuations)."""

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GenerationRecord:
    prompt: str
    """The final user turn (or the raw text in non-chat mode)."""
    response: str
    prompt_tokens: int
    response_tokens: int
    seconds: float
    """Wall time of the batch this record was generated in, shared equally among its members."""
    finished: bool = True
    """False when generation stopped at max_new_tokens rather than at end of turn."""
    messages: Conversation = field(default_factory=list)


class Generator(Protocol):
    name: str

    def generate(self, conversations: list[Conversation | str], cfg: GenerationConfig,
                 progress: Callable[[int], None] | None = None) -> list[GenerationRecord]: ...


_REGISTRY: dict[str, Callable[..., Generator]] = {}


def register_generator(name: str):
    def deco(factory):
        _REGISTRY[name] = factory
        return factory

    return deco


def get_generator(name: str, **kwargs) -> Generator:
    """Build a generator backend by name: `transformers` (default, CPU or GPU) or `vllm` (GPU)."""
    from safealign.generation import hf, vllm  # noqa: F401  (registers the backends)

    if name not in _REGISTRY:
        raise SafealignError(f"unknown generation backend {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)


def as_conversation(item: Conversation | str, system_prompt: str | None) -> Conversation:
    conv = [{"role": "user", "content": item}] if isinstance(item, str) else list(item)
    if system_prompt and (not conv or conv[0]["role"] != "system"):
        conv = [{"role": "system", "content": system_prompt}, *conv]
    return conv
