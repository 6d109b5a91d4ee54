"""Model loading (hub id, local dir, run dir, embedded GGUF), device/dtype choice, tiny test models, LoRA."""

from safealign.models.loading import (
    EMBEDDED_ALIASES,
    choose_device,
    choose_dtype,
    ensure_chat_template,
    load_model,
    load_tokenizer,
    resolve_model_path,
)

__all__ = [
    "EMBEDDED_ALIASES",
    "choose_device",
    "choose_dtype",
    "ensure_chat_template",
    "load_model",
    "load_tokenizer",
    "resolve_model_path",
]
