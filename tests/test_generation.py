"""Batched generation: left padding and length sorting must not change what greedy decoding says."""

from __future__ import annotations

import torch

from safealign.generation import GenerationConfig, get_generator

PROMPTS = ["Hi", "Tell me a long story about a very small dragon who lived in a tall tower", "What is 2+2?",
           "Paris?", [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"},
                      {"role": "user", "content": "And now?"}]]


def test_batched_greedy_equals_one_at_a_time(tiny_model):
    model, tok = tiny_model
    gen = get_generator("transformers", model=model, tokenizer=tok)
    cfg = GenerationConfig(max_new_tokens=12, batch_size=4)
    batched = gen.generate(PROMPTS, cfg)
    single = [gen.generate([p], cfg)[0] for p in PROMPTS]
    assert [r.response for r in batched] == [r.response for r in single]
    assert [r.prompt for r in batched] == ["Hi", PROMPTS[1], "What is 2+2?", "Paris?", "And now?"]
    assert all(r.response_tokens <= 12 and r.prompt_tokens > 0 and r.seconds > 0 for r in batched)
    assert batched[4].messages[-1] == {"role": "user", "content": "And now?"}


def test_sampling_is_reproducible_and_differs_from_greedy(tiny_model):
    model, tok = tiny_model
    gen = get_generator("transformers", model=model, tokenizer=tok)
    cfg = GenerationConfig(max_new_tokens=16, temperature=1.0, top_p=0.95, seed=7)
    a = gen.generate(PROMPTS, cfg)
    b = gen.generate(PROMPTS, cfg)
    assert [r.response for r in a] == [r.response for r in b]
    greedy = gen.generate(PROMPTS, GenerationConfig(max_new_tokens=16))
    assert [r.response for r in a] != [r.response for r in greedy]


def test_system_prompt_and_raw_mode(tiny_model):
    model, tok = tiny_model
    gen = get_generator("transformers", model=model, tokenizer=tok)
    rec = gen.generate(["Hello"], GenerationConfig(max_new_tokens=4, system_prompt="Be safe."))[0]
    assert rec.messages[0] == {"role": "system", "content": "Be safe."}
    raw = gen.generate(["Once upon a time"], GenerationConfig(max_new_tokens=4, chat=False))[0]
    assert raw.messages == [] and raw.prompt_tokens == len(tok("Once upon a time")["input_ids"])


def test_unknown_backend_is_a_clear_error():
    import pytest

    from safealign.errors import SafealignError

    with pytest.raises(SafealignError, match="unknown generation backend 'llama.cpp'"):
        get_generator("llama.cpp")


def test_device_and_dtype_choice():
    from safealign.models import choose_device, choose_dtype

    cpu = torch.device("cpu")
    assert choose_dtype(cpu) == torch.float32
    assert choose_dtype(cpu, "bf16") == torch.bfloat16
    if not torch.cuda.is_available():
        assert choose_device("auto").type == "cpu"
