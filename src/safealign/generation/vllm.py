"""vLLM backend (GPU): same interface as the transformers backend; imported only when selected."""

from __future__ import annotations

import time
from collections.abc import Callable

from safealign.errors import SafealignError
from safealign.generation.base import (
    Conversation,
    GenerationConfig,
    GenerationRecord,
    as_conversation,
    register_generator,
)


@register_generator("vllm")
class VLLMGenerator:
    name = "vllm"

    def __init__(self, model_path: str, dtype: str = "auto", gpu_memory_utilization: float = 0.85):
        try:
            from vllm import LLM
        except ImportError:
            raise SafealignError("generation backend 'vllm' needs `pip install safealign[vllm]` and a GPU") from None
        self.llm = LLM(model=model_path, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, conversations: list[Conversation | str], cfg: GenerationConfig,
                 progress: Callable[[int], None] | None = None) -> list[GenerationRecord]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                top_p=cfg.top_p if cfg.do_sample else 1.0, seed=cfg.seed)
        t0 = time.perf_counter()
        if cfg.chat:
            convs = [as_conversation(c, cfg.system_prompt) for c in conversations]
            outs = self.llm.chat(convs, params, use_tqdm=False)
        else:
            convs = [[] for _ in conversations]
            outs = self.llm.generate(list(conversations), params, use_tqdm=False)
        seconds = (time.perf_counter() - t0) / max(1, len(conversations))
        records = []
        for conv, msgs, o in zip(conversations, convs, outs):
            c = o.outputs[0]
            records.append(GenerationRecord(
                prompt=conv if isinstance(conv, str) else conv[-1]["content"], response=c.text.strip(),
                prompt_tokens=len(o.prompt_token_ids), response_tokens=len(c.token_ids), seconds=seconds,
                finished=c.finish_reason == "stop", messages=msgs,
            ))
        if progress:
            progress(len(records))
        return records
