"""Safety SFT through TRL's SFTTrainer: loss on the assistant's answer only, LoRA by default, merged on export.

Examples become prompt-completion records (conversation → assistant answer), for which TRL computes the
loss on completion tokens only. The safety fraction keeps that share of the adversarial demonstrations
while the helpful ones stay fixed (Llama 2's safety-data scaling experiment varies exactly this).

Off CUDA the loss is ours (`completion_nll`, in `sft_trainer_class`): TRL's fused LM head scores only the
completion positions with a Triton kernel, but without Triton it scores every position (prompt and padding)
in 32k-vocabulary tiles, with entropy and top-1 statistics, and recomputes each tile in the backward pass:
measured 129.5 non-padding tokens/s through it against 199.5 for a plain PyTorch loop on 2 CPU cores, and
220.9 against 214.8 with ours (benchmarks/train_throughput.py). On CUDA, TRL's path is used unchanged.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from safealign.data.records import Example
from safealign.io import atomic_path
from safealign.models.loading import choose_device, load_model

log = logging.getLogger(__name__)


@dataclass
class SFTStageConfig:
    lora: bool = True
    """LoRA adapters (merged on export) rather than full fine-tuning: ~25% faster per step on CPU."""
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                     "gate_proj", "up_proj", "down_proj"])
    lora_layers: int | None = None
    """Adapters on the top N decoder layers only (None: all). The backward pass then stops at the lowest
    adapted layer: on the embedded model (30 layers) a step with the top 15 costs 0.73x one with all 30
    (`benchmarks/lora_layers_step.py`)."""
    learning_rate: float = 3e-4
    """LoRA on a 135M model needs a high rate to move in a few hundred steps; the GPU recipe uses 2e-5 full FT."""
    epochs: float = 3.0
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 320
    """Tokens per example (system + prompt + answer); our demonstrations fit in ~250."""
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    safety_fraction: float = 1.0
    """Share of adversarial demonstrations kept (0..1); helpful demonstrations are always all kept."""
    opening_tokens: int = 0
    opening_weight: float = 1.0
    """Weight of the first `opening_tokens` answer tokens in the loss (1.0: plain NLL). The comply-or-decline
    decision is made in an answer's opening words, a few tokens among ~100; weighting them makes the
    classification part of the objective count (Qi et al. 2024 weight the first tokens to the same end)."""
    decision_weight: float = 0.0
    """Weight of the decline-or-answer loss at the first answer token (0: off): the NLL of the probability
    mass of the row's class (declines: the tokens that open this data's declines, `refusal_tokens`; answers:
    every other token) rather than of one token. A benign answer opens with one of hundreds of tokens ("The",
    "1.", "Use"...) while declines open with one ("I"), so token NLL leaves a decline token the most likely
    single token on many benign prompts, and greedy decoding picks it: on an SFT model without it 38% of dev benign
    prompts opened with a decline token while their median decline mass was 0.08. Measured on the
    embedded model (README): weight 10 → XSTest safe refusal 30.4% → 18.8%, core violation 6.4% → 6.1%;
    25 → 14.0% and 9.4%. A pairwise form (the answer token against the whole decline mass) at 10 overshot:
    4.4% and 27.8%."""
    group_by_length: bool = True
    """Batch examples of similar length (less padding): measured 89 → 150 non-padding tokens/s on 2 CPU cores."""
    seed: int = 0
    logging_steps: int = 10
    device: str = "auto"
    report_to: list[str] = field(default_factory=list)


def mix_examples(examples: list[Example], safety_fraction: float, seed: int = 0) -> list[Example]:
    """Keep all benign examples and a deterministic `safety_fraction` of the adversarial ones."""
    if not 0.0 <= safety_fraction <= 1.0:
        raise ValueError(f"safety_fraction must be in [0, 1], got {safety_fraction}")
    adversarial = [e for e in examples if e.is_safety]
    adversarial.sort(key=lambda e: hashlib.sha256(f"{seed}:{e.id}".encode()).hexdigest())
    keep = {e.id for e in adversarial[: round(safety_fraction * len(adversarial))]}
    return [e for e in examples if not e.is_safety or e.id in keep]


def answer_rank(mask: torch.Tensor) -> torch.Tensor:
    """Per label position (the True entries of `mask`, row-major): its 1-based place in its row's answer."""
    return mask.long().cumsum(dim=1)[mask]


def opening_weights(mask: torch.Tensor, opening_tokens: int, opening_weight: float) -> torch.Tensor:
    """Per label position (the True entries of `mask`, row-major): `opening_weight` for the first
    `opening_tokens` label positions of each row, 1 after them."""
    return torch.where(answer_rank(mask) <= opening_tokens, opening_weight, 1.0)


def refusal_tokens(first_tokens: list[int | None], is_safety: list[bool], min_share: float = 0.01) -> list[int]:
    """The answer-opening token ids with which this data declines ("I" of "I can't"), read off the data
    rather than listed per tokenizer: those that open at least `min_share` of the adversarial demonstrations
    and more of them than of the benign answers. The share keeps out the odd demonstration that opens with
    its alternative ("Planning a trip..."). None (a row truncated before its answer) has no vote."""
    if len(first_tokens) != len(is_safety):
        raise ValueError(f"{len(first_tokens)} first tokens for {len(is_safety)} examples")
    pairs = [(t, safety) for t, safety in zip(first_tokens, is_safety) if t is not None]
    adversarial = Counter(t for t, safety in pairs if safety)
    benign = Counter(t for t, safety in pairs if not safety)
    n = adversarial.total()
    return sorted(t for t, c in adversarial.items() if c >= min_share * n and c > benign[t])


def first_answer_tokens(dataset) -> list[int | None]:
    """The first label token of each row of a tokenized SFT dataset (its answer's first token; None when
    truncation left the row no answer tokens)."""
    return [next((t for t in labels if t != -100), None) for labels in dataset["labels"]]


def decision_nll(first_logits: torch.Tensor, first_targets: torch.Tensor, refusal_ids: torch.Tensor) -> torch.Tensor:
    """Per row: −log of the probability mass of the class (decline: a token in `refusal_ids`; answer: any
    other token) that the row's own first answer token belongs to."""
    declines = torch.zeros(first_logits.shape[-1], dtype=torch.bool, device=first_logits.device)
    declines[refusal_ids] = True
    own_class = torch.where(declines[first_targets][:, None], declines, ~declines)
    log_own = torch.logsumexp(first_logits.masked_fill(~own_class, float("-inf")), dim=-1)
    return torch.logsumexp(first_logits, dim=-1) - log_own


def completion_nll(model, inputs: dict, num_items_in_batch=None, opening_tokens: int = 0,
                   opening_weight: float = 1.0, decision_weight: float = 0.0,
                   refusal_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token NLL summed over the label positions (labels != -100), divided by `num_items_in_batch`
    (TRL's and transformers' token-level normalisation across gradient accumulation) or, without it, by the
    number of label positions. Only those positions go through the LM head, so prompt and padding tokens cost
    the backbone and nothing more. The first `opening_tokens` label positions of each row count
    `opening_weight` times; with `decision_weight`, each row's `decision_nll` at its first answer token is
    added with that weight. Returns (loss, top-1 hits per label position)."""
    base = _unwrap(model)
    fwd = {k: inputs[k] for k in ("input_ids", "attention_mask", "position_ids") if k in inputs}
    hidden = base.base_model(**fwd, use_cache=False).last_hidden_state[:, :-1]
    labels = inputs["labels"][:, 1:]
    mask = labels != -100
    targets = labels[mask]
    logits = base.get_output_embeddings()(hidden[mask]).float()
    nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    if opening_tokens > 0 and opening_weight != 1.0:
        nll = nll * opening_weights(mask, opening_tokens, opening_weight).to(nll.dtype)
    nll = nll.sum()
    if decision_weight and refusal_ids is not None and len(refusal_ids):
        first = answer_rank(mask) == 1
        nll = nll + decision_weight * decision_nll(logits[first], targets[first], refusal_ids).sum()
    denom = mask.sum() if num_items_in_batch is None else num_items_in_batch
    return nll / torch.as_tensor(denom, device=nll.device).clamp(min=1), logits.detach().argmax(-1) == targets


def _unwrap(model):
    """The model under a PEFT wrapper (its LoRA layers injected in place), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _plain_head(model) -> bool:
    """True when the LM head is a plain projection (no logit scale or soft-capping that TRL's head applies)."""
    text = _unwrap(model).config.get_text_config()
    return not any(getattr(text, a, None) for a in ("final_logit_softcapping", "logit_scale", "output_multiplier",
                                                     "lm_head_multiplier", "logits_scaling"))


def sft_trainer_class(opening_tokens: int = 0, opening_weight: float = 1.0, decision_weight: float = 0.0):
    """TRL's SFTTrainer, with `completion_nll` as the loss off CUDA (see the module docstring), and on CUDA
    too when the opening tokens are weighted or the decision loss is on (TRL's loss has neither). Set the
    trainer's `refusal_ids` (`refusal_tokens` of its data) for the decision loss."""
    from trl import SFTTrainer

    own_loss_needed = (opening_tokens > 0 and opening_weight != 1.0) or decision_weight > 0

    class CompletionLossSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not hasattr(self, "_plain_head"):  # a property of the model: decided once, not every step
                self._plain_head = _plain_head(model)
                if own_loss_needed and not self._plain_head:
                    log.warning("sft.opening_weight and sft.decision_weight are not applied: this model's LM "
                                "head is not a plain projection, so TRL's unweighted loss is used")
            if ((inputs["input_ids"].is_cuda and not own_loss_needed) or return_outputs or "labels" not in inputs
                    or not self._plain_head):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            ids = getattr(self, "refusal_ids", None)
            if ids is not None and ids.device != inputs["input_ids"].device:
                ids = self.refusal_ids = ids.to(inputs["input_ids"].device)
            loss, top1 = completion_nll(model, inputs, num_items_in_batch, opening_tokens, opening_weight,
                                        decision_weight, ids)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            self._metrics[mode]["mean_token_accuracy"].append(top1.float().mean().item() if top1.numel() else 0.0)
            if mode == "train" and "attention_mask" in inputs:
                self._total_train_tokens += int(inputs["attention_mask"].sum())
                self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return loss

    return CompletionLossSFTTrainer


def to_prompt_completion(examples: list[Example], system_prompt: str | None = None) -> list[dict]:
    rows = []
    for e in examples:
        prompt = e.conversation()
        if system_prompt:
            prompt = [{"role": "system", "content": system_prompt}, *prompt]
        rows.append({"prompt": prompt, "completion": [{"role": "assistant", "content": e.response}]})
    return rows


def sft_config(cfg: SFTStageConfig, output_dir: str | Path, n_examples: int):
    """TRL's SFTConfig with dtype and checkpointing chosen by device (its bf16 default is 18x slower on CPU)."""
    from trl import SFTConfig

    on_gpu = choose_device(cfg.device).type == "cuda"
    bf16 = on_gpu and torch.cuda.is_bf16_supported()
    steps = math.ceil(n_examples / (cfg.batch_size * cfg.grad_accum)) * cfg.epochs
    return SFTConfig(
        output_dir=str(output_dir), num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler, warmup_steps=max(0, round(cfg.warmup_ratio * steps)),
        weight_decay=cfg.weight_decay, max_length=cfg.max_length, completion_only_loss=True,
        bf16=bf16, fp16=False, use_cpu=not on_gpu, gradient_checkpointing=on_gpu,
        save_strategy="no", report_to=cfg.report_to, logging_steps=cfg.logging_steps, seed=cfg.seed,
        data_seed=cfg.seed, dataloader_num_workers=0, disable_tqdm=False, packing=False,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
    )


def top_layers(model, n: int | None) -> list[int] | None:
    """Indices of the top `n` decoder layers of `model` (None: all layers, PEFT's default)."""
    if n is None:
        return None
    total = model.config.num_hidden_layers
    if not 1 <= n <= total:
        raise ValueError(f"lora_layers must be between 1 and {total} for this model, got {n}")
    return list(range(total - n, total))


def train_sft(model_spec: str | Path, examples: list[Example], out_dir: str | Path, cfg: SFTStageConfig,
              model=None, tokenizer=None, system_prompt: str | None = None) -> dict:
    """Fine-tune `model_spec` on `examples`; write the merged model to `out_dir` atomically; return metrics."""
    from datasets import Dataset
    from peft import LoraConfig

    mixed = mix_examples(examples, cfg.safety_fraction, cfg.seed)
    if not mixed:
        raise ValueError("no training examples after mixing")
    if model is None:
        model, tokenizer = load_model(model_spec, device=cfg.device, for_training=True)
    model.train()
    peft_config = None
    if cfg.lora:
        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                 target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM",
                                 layers_to_transform=top_layers(model, cfg.lora_layers))
    ds = Dataset.from_list(to_prompt_completion(mixed, system_prompt))
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        args = sft_config(cfg, tmp / "trainer", len(mixed))
        trainer_class = sft_trainer_class(cfg.opening_tokens, cfg.opening_weight, cfg.decision_weight)
        trainer = trainer_class(model=model, args=args, train_dataset=ds, processing_class=tokenizer,
                                peft_config=peft_config)
        declines = []
        if cfg.decision_weight > 0:
            declines = refusal_tokens(first_answer_tokens(trainer.train_dataset), [e.is_safety for e in mixed])
            trainer.refusal_ids = torch.tensor(declines, dtype=torch.long)
            if not declines:
                log.warning("sft.decision_weight is not applied: no answer-opening token opens more adversarial "
                            "demonstrations than benign answers in this data")
            log.info("decision loss: %d decline-opening tokens %s", len(declines),
                     [tokenizer.decode([t]) for t in declines[:10]])
        t0 = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - t0
        trained = trainer.model
        if cfg.lora:
            trained = trained.merge_and_unload()
        trained.generation_config.pad_token_id = tokenizer.pad_token_id
        trained.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        import shutil

        shutil.rmtree(tmp / "trainer", ignore_errors=True)
        n_tokens = int(trainer.state.num_input_tokens_seen or 0)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "examples": len(mixed), "adversarial": sum(e.is_safety for e in mixed),
        "benign": sum(not e.is_safety for e in mixed), "steps": trainer.state.global_step,
        "train_loss": result.training_loss, "first_logged_loss": losses[0] if losses else None,
        "last_logged_loss": losses[-1] if losses else None, "seconds": seconds,
        "config": asdict(cfg), "tokens_seen": n_tokens, "refusal_tokens": declines,
    }
