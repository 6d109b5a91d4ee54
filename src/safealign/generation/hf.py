"""Batched generation with transformers: length-sorted batches, left padding, greedy or sampled."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from safealign.generation.base import (
    Conversation,
    GenerationConfig,
    GenerationRecord,
    as_conversation,
    register_generator,
)


@register_generator("transformers")
class HFGenerator:
    name = "transformers"

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def encode(self, conv: Conversation | str, cfg: GenerationConfig) -> list[int]:
        if not cfg.chat:
            assert isinstance(conv, str), "raw (non-chat) generation takes strings"
            return self.tokenizer(conv, add_special_tokens=False)["input_ids"]
        msgs = as_conversation(conv, cfg.system_prompt)
        ids = self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)

    @torch.inference_mode()
    def generate(self, conversations: list[Conversation | str], cfg: GenerationConfig,
                 progress: Callable[[int], None] | None = None) -> list[GenerationRecord]:
        tok, model = self.tokenizer, self.model
        encoded = [self.encode(c, cfg) for c in conversations]
        # Sorting by length keeps padding (wasted compute) low; results go back in input order.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out: list[GenerationRecord | None] = [None] * len(encoded)
        eos_ids = _stop_ids(tok, model)
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos_ids[0]
        device = next(model.parameters()).device
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            width = max(len(encoded[i]) for i in idx)
            input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
            attention = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):  # left padding: every prompt ends where generation starts
                n = len(encoded[i])
                input_ids[row, width - n:] = torch.tensor(encoded[i])
                attention[row, width - n:] = 1
            if cfg.do_sample:  # a seed per batch keeps sampling reproducible whatever the batch order
                torch.manual_seed(cfg.seed + start)
            t0 = time.perf_counter()
            gen = model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device),
                max_new_tokens=cfg.max_new_tokens, do_sample=cfg.do_sample,
                temperature=cfg.temperature if cfg.do_sample else None,
                top_p=cfg.top_p if cfg.do_sample else None, top_k=None,
                eos_token_id=eos_ids, pad_token_id=pad,
            )
            seconds = (time.perf_counter() - t0) / len(idx)
            for row, i in enumerate(idx):
                new = gen[row, width:].tolist()
                finished = False
                for j, t in enumerate(new):
                    if t in eos_ids:
                        new, finished = new[:j], True
                        break
                conv = conversations[i]
                out[i] = GenerationRecord(
                    prompt=conv if isinstance(conv, str) else conv[-1]["content"],
                    response=tok.decode(new, skip_special_tokens=True).strip(),
                    prompt_tokens=len(encoded[i]), response_tokens=len(new), seconds=seconds, finished=finished,
                    messages=as_conversation(conv, cfg.system_prompt) if cfg.chat else [],
                )
            if progress:
                progress(len(idx))
        return out  # type: ignore[return-value]


def _stop_ids(tok, model) -> list[int]:
    ids = []
    for cand in (model.generation_config.eos_token_id, tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")):
        for c in cand if isinstance(cand, list) else [cand]:
            if isinstance(c, int) and c >= 0 and c != tok.unk_token_id and c not in ids:
                ids.append(c)
    return ids
