"""The embedded SmolLM2-135M-Instruct: converted once, cached, loads and generates (slow, bounded)."""

from __future__ import annotations

import pytest

from safealign.generation import GenerationConfig, get_generator
from safealign.models import load_model
from safealign.models.loading import convert_embedded

pytestmark = pytest.mark.slow


def test_embedded_converts_once_and_reloads_fast():
    path = convert_embedded()
    assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    model, tok = load_model("embedded")
    assert convert_embedded() == path and (path / "model.safetensors").stat().st_mtime_ns == stamp  # reused
    assert model.config.model_type == "llama" and model.num_parameters() > 100_000_000
    assert next(model.parameters()).dtype.is_floating_point and str(next(model.parameters()).dtype) == "torch.float32"
    assert tok.padding_side == "left"


def test_embedded_generates_batched_like_single():
    model, tok = load_model("embedded")
    gen = get_generator("transformers", model=model, tokenizer=tok)
    prompts = ["What is the capital of France?", "Name three primary colours.", "Say hello."]
    cfg = GenerationConfig(max_new_tokens=12, batch_size=3)
    batched = gen.generate(prompts, cfg)
    single = [gen.generate([p], cfg)[0] for p in prompts]
    assert all(r.response for r in batched)
    assert [r.response for r in batched] == [r.response for r in single]
    assert "Paris" in batched[0].response
