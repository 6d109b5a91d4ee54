"""Safety and helpfulness reward models: TRL's RewardTrainer with Llama 2's margin, plus a safety auxiliary loss.

Loss (Llama 2, Eq. 2):      L = −log σ(r_θ(x, y_c) − r_θ(x, y_r) − m(rating))
Safety auxiliary (optional): + w · BCE(σ(r_θ(x, y)), safe(y)) over both responses of a pair.

The reward model is the chat model with a sequence-classification head (one scalar); scores are
exposed as σ(r) in [0, 1] through `RewardModel.score`. On CPU the default trains only the top layers
and the head on short sequences (a forward pass through 30 frozen layers needs no backward), which is
what keeps two reward models inside ~10 minutes; the GPU recipe trains everything with Llama 2's
settings.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from safealign.data.preferences import PreferencePair, margin
from safealign.io import atomic_path
from safealign.models.loading import choose_device, choose_dtype, ensure_chat_template, resolve_model_path


def right_padded_batches(seqs: list[list[int]], batch_size: int, pad: int):
    """(indices, input_ids, attention_mask) per batch of token sequences, shortest first, right-padded: each
    row's last real token is at `len(seqs[i]) - 1`."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(seqs[i]) for i in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, :len(seqs[i])] = torch.tensor(seqs[i])
            mask[row, :len(seqs[i])] = 1
        yield idx, ids, mask


@dataclass
class RewardModelConfig:
    margin: str = "small"
    """Rating → margin: none, small (1, 2/3, 1/3, 0) or large (3, 2, 1, 0) (Llama 2 Table 27)."""
    safety_aux_weight: float = 0.0
    """Weight of the auxiliary BCE between σ(r) and the safe/unsafe label (0 = off)."""
    trainable_layers: int = 4
    """Top decoder layers trained (plus final norm and head); -1 trains all. CPU trade-off, see module doc."""
    lora: bool = False
    """LoRA on the trainable layers instead of full weights (head always trained in full)."""
    learning_rate: float = 2e-4
    """For the CPU default (top layers + a fresh head, ~40 steps); the GPU recipe uses Llama 2's 1e-5."""
    epochs: float = 1.0
    batch_size: int = 8
    """Pairs per step (each pair is two sequences)."""
    grad_accum: int = 1
    max_length: int = 192
    max_response_tokens: int = 96
    """Responses are cut to their first tokens (a refusal shows in its opening); prompts keep their end."""
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine_with_min_lr"
    min_lr_rate: float = 0.1
    """Cosine decay to 10% of the peak (Llama 2)."""
    max_pairs: int | None = 480
    """Cap on training pairs (CPU budget); None = all."""
    seed: int = 0
    device: str = "auto"
    report_to: list[str] = field(default_factory=list)


@dataclass
class RewardModelsStageConfig:
    safety: RewardModelConfig = field(default_factory=lambda: RewardModelConfig(safety_aux_weight=0.5))
    """The safety RM: safety pairs plus `helpfulness_share_in_safety` helpfulness pairs, auxiliary BCE on."""
    helpfulness: RewardModelConfig = field(default_factory=RewardModelConfig)
    helpfulness_share_in_safety: float = 0.1
    """Llama 2 mixed ~10% helpfulness data into the safety RM's training set."""
    init_from: str = "sft"
    """Initialise both RMs from the `sft` model (the current chat model, as Llama 2 did) or the `base` one."""
    hh_eval_pairs: int = 200
    """HH-RLHF test pairs scored per RM (harmless-base → safety, helpful-base → helpfulness); 0 = skip."""
    gate_threshold: float = 0.15
    """Llama 2's safety gate: below it, the safety score is used even for non-safety prompts."""


def safety_mix(pairs: list[PreferencePair], helpfulness_share: float, seed: int = 0) -> list[PreferencePair]:
    """All safety pairs plus helpfulness pairs making up `helpfulness_share` of the result."""
    safety = [p for p in pairs if p.is_safety]
    helpful = [p for p in pairs if not p.is_safety]
    random.Random(seed).shuffle(helpful)
    n = round(helpfulness_share / max(1e-9, 1 - helpfulness_share) * len(safety)) if helpfulness_share < 1 else \
        len(helpful)
    return safety + helpful[:n]


def encode_pair_side(tokenizer, prompt: list[dict[str, str]], response: str, max_length: int,
                     max_response_tokens: int) -> list[int]:
    """Chat-format tokens of (prompt, response): the response's first tokens, the prompt's last ones."""
    prompt_ids = list(_ids(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)))
    full = list(_ids(tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": response}],
                                                   tokenize=True)))
    response_ids = full[len(prompt_ids):] if full[:len(prompt_ids)] == prompt_ids else \
        tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    response_ids = response_ids[:max_response_tokens]
    room = max(8, max_length - len(response_ids))
    return prompt_ids[-room:] + response_ids


def _ids(out):
    return out["input_ids"] if hasattr(out, "keys") else out


class _MarginRewardTrainer:
    """Built lazily (TRL import is heavy): RewardTrainer that also carries safe/unsafe labels."""

    @staticmethod
    def make(aux_weight: float):
        from trl import RewardTrainer

        class MarginRewardTrainer(RewardTrainer):
            def _set_signature_columns_if_needed(self):
                if self._signature_columns is None:
                    self._signature_columns = ["chosen_ids", "rejected_ids", "margin", "safe_labels"]

            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                safe = inputs.pop("safe_labels", None)
                loss, outputs = super().compute_loss(model, inputs, return_outputs=True,
                                                     num_items_in_batch=num_items_in_batch)
                if aux_weight > 0 and safe is not None:
                    loss = loss + aux_weight * safety_aux_loss(outputs.logits.squeeze(-1), safe)
                return (loss, outputs) if return_outputs else loss

        return MarginRewardTrainer


def ranking_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, margins: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """Llama 2 Eq. 2: mean of −log σ(r_c − r_r − m(rating)); TRL's RewardTrainer computes the same."""
    diff = r_chosen - r_rejected - (margins if margins is not None else 0.0)
    return -nn.functional.logsigmoid(diff).mean()


def safety_aux_loss(rewards: torch.Tensor, safe_labels: torch.Tensor) -> torch.Tensor:
    """BCE(σ(r), safe) over responses whose label is known (label −1 = unknown, ignored).

    `rewards` holds the chosen half then the rejected half, as TRL concatenates them; `safe_labels`
    is (batch, 2) with columns (chosen_safe, rejected_safe).
    """
    labels = torch.cat([safe_labels[:, 0], safe_labels[:, 1]]).to(rewards.dtype)
    known = labels >= 0
    if not known.any():
        return rewards.sum() * 0.0
    return nn.functional.binary_cross_entropy_with_logits(rewards[known], labels[known])


class _Collator:
    def __init__(self, pad_token_id: int):
        from trl.trainer.reward_trainer import DataCollatorForPreference

        self.inner = DataCollatorForPreference(pad_token_id=pad_token_id)

    def __call__(self, examples):
        out = self.inner([{k: v for k, v in e.items() if k != "safe_labels"} for e in examples])
        if "safe_labels" in examples[0]:
            out["safe_labels"] = torch.tensor([e["safe_labels"] for e in examples], dtype=torch.float)
        return out


def pairs_to_rows(pairs: list[PreferencePair], tokenizer, cfg: RewardModelConfig) -> list[dict]:
    def lab(x):
        return -1 if x is None else int(x)

    return [{"chosen_ids": encode_pair_side(tokenizer, p.prompt, p.chosen, cfg.max_length, cfg.max_response_tokens),
             "rejected_ids": encode_pair_side(tokenizer, p.prompt, p.rejected, cfg.max_length,
                                              cfg.max_response_tokens),
             "margin": margin(p.rating, cfg.margin), "safe_labels": [lab(p.chosen_safe), lab(p.rejected_safe)]}
            for p in pairs]


def _freeze_lower_layers(model, trainable_layers: int) -> None:
    if trainable_layers < 0:
        return
    for p in model.parameters():
        p.requires_grad = False
    layers = model.model.layers
    for layer in layers[len(layers) - trainable_layers:]:
        for p in layer.parameters():
            p.requires_grad = True
    for p in model.model.norm.parameters():
        p.requires_grad = True
    for p in model.score.parameters():
        p.requires_grad = True


def train_reward_model(base_spec: str | Path, pairs: list[PreferencePair], out_dir: str | Path,
                       cfg: RewardModelConfig) -> dict:
    """Train a reward model on `pairs` from the chat model `base_spec`; save it atomically to `out_dir`."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig

    if not pairs:
        raise ValueError("no preference pairs to train on")
    rng = random.Random(cfg.seed)
    pairs = list(pairs)
    rng.shuffle(pairs)
    if cfg.max_pairs:
        pairs = pairs[:cfg.max_pairs]
    path = resolve_model_path(base_spec)
    device = choose_device(cfg.device)
    tok = AutoTokenizer.from_pretrained(path)
    ensure_chat_template(tok)
    torch.manual_seed(cfg.seed)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=choose_dtype(device))
    model.config.pad_token_id = tok.pad_token_id
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        n = model.config.num_hidden_layers
        top = range(n - cfg.trainable_layers, n) if cfg.trainable_layers > 0 else None
        peft_config = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                      "gate_proj", "up_proj", "down_proj"],
                                 layers_to_transform=list(top) if top else None, modules_to_save=["score"],
                                 task_type="SEQ_CLS")
    else:
        _freeze_lower_layers(model, cfg.trainable_layers)
    ds = Dataset.from_list(pairs_to_rows(pairs, tok, cfg))
    on_gpu = device.type == "cuda"
    steps = math.ceil(len(pairs) / (cfg.batch_size * cfg.grad_accum)) * cfg.epochs
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        args = RewardConfig(
            output_dir=str(tmp / "trainer"), num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
            gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate,
            lr_scheduler_type=cfg.lr_scheduler,
            lr_scheduler_kwargs={"min_lr_rate": cfg.min_lr_rate} if cfg.lr_scheduler == "cosine_with_min_lr" else None,
            warmup_steps=max(0, round(cfg.warmup_ratio * steps)), max_length=None, bf16=on_gpu and
            torch.cuda.is_bf16_supported(), use_cpu=not on_gpu, gradient_checkpointing=False,
            save_strategy="no", report_to=cfg.report_to, logging_steps=5, seed=cfg.seed, data_seed=cfg.seed,
            dataloader_num_workers=0, remove_unused_columns=False,
        )
        trainer = _MarginRewardTrainer.make(cfg.safety_aux_weight)(
            model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config,
            data_collator=_Collator(tok.pad_token_id))
        t0 = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - t0
        trained = trainer.model
        if cfg.lora:
            trained = trained.merge_and_unload()
        trained.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        import shutil

        shutil.rmtree(tmp / "trainer", ignore_errors=True)
    accs = [h["accuracy"] for h in trainer.state.log_history if "accuracy" in h]
    return {"pairs": len(pairs), "steps": trainer.state.global_step, "train_loss": result.training_loss,
            "last_logged_train_accuracy": accs[-1] if accs else None, "seconds": seconds, "config": asdict(cfg)}


class RewardModel:
    """A trained reward model: `score(prompts, responses) -> σ(r)` in [0, 1], batched.

    `score_both(other, ...)` scores with this model and another at once. Two RMs trained from one checkpoint
    with `trainable_layers` share their embeddings and lower layers bit for bit; the shared trunk then runs once
    and only the other's top layers run again (the CPU recipe's RMs: 26 of 30 layers shared, so scoring with
    both costs 34/30 of one model instead of 2×).
    """

    def __init__(self, path: str | Path, device: str = "auto", max_length: int = 192, max_response_tokens: int = 96,
                 batch_size: int = 16):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.path = str(path)
        self.device = choose_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        ensure_chat_template(self.tokenizer)
        self.model = AutoModelForSequenceClassification.from_pretrained(self.path, dtype=choose_dtype(self.device))
        self.model.to(self.device).eval()
        self.max_length, self.max_response_tokens, self.batch_size = max_length, max_response_tokens, batch_size
        self._shared: dict[int, tuple[RewardModel, int]] = {}

    def _batches(self, prompts: list, responses: list[str]):
        """(row indices, input_ids, attention_mask) per batch, shortest first, right-padded as in training: the
        score sits on the last real token."""
        convs = [[{"role": "user", "content": p}] if isinstance(p, str) else list(p) for p in prompts]
        encoded = [encode_pair_side(self.tokenizer, c, r, self.max_length, self.max_response_tokens)
                   for c, r in zip(convs, responses)]
        for idx, ids, mask in right_padded_batches(encoded, self.batch_size, self.tokenizer.pad_token_id):
            yield idx, ids.to(self.device), mask.to(self.device)

    @torch.inference_mode()
    def raw_scores(self, prompts: list, responses: list[str]) -> list[float]:
        out = [0.0] * len(responses)
        for idx, ids, mask in self._batches(prompts, responses):
            logits = self.model(input_ids=ids, attention_mask=mask).logits
            for row, i in enumerate(idx):
                out[i] = float(logits[row, 0])
        return out

    def score(self, prompts: list, responses: list[str]) -> list[float]:
        return _sigmoid(self.raw_scores(prompts, responses))

    def shared_layers(self, other: RewardModel) -> int:
        """How many lower decoder layers (with the embeddings) `other` shares with this model, weight for weight;
        0 when the embeddings, tokenizers or shapes differ."""
        if id(other) not in self._shared:  # the entry holds `other`, so its id cannot be reused while cached
            self._shared[id(other)] = (other, _shared_trunk(self, other))
        return self._shared[id(other)][1]

    @torch.inference_mode()
    def raw_scores_both(self, other: RewardModel, prompts: list, responses: list[str]) -> tuple[list[float], list[float]]:
        k = self.shared_layers(other)
        if k == 0:
            return self.raw_scores(prompts, responses), other.raw_scores(prompts, responses)
        mine, theirs = [0.0] * len(responses), [0.0] * len(responses)
        for idx, ids, mask in self._batches(prompts, responses):
            out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            tail = _top_layers_logits(other.model, out.hidden_states[k], mask, k)
            last = _pooled_position(ids, other.model.config.pad_token_id)
            for row, i in enumerate(idx):
                mine[i] = float(out.logits[row, 0])
                theirs[i] = float(tail[row, last[row], 0])
        return mine, theirs

    def score_both(self, other: RewardModel, prompts: list, responses: list[str]) -> tuple[list[float], list[float]]:
        """(this model's σ scores, `other`'s σ scores) for the same pairs, sharing the common trunk's pass."""
        mine, theirs = self.raw_scores_both(other, prompts, responses)
        return _sigmoid(mine), _sigmoid(theirs)


def _sigmoid(raw: list[float]) -> list[float]:
    return torch.sigmoid(torch.tensor(raw, dtype=torch.float64)).tolist()


def _shared_trunk(a: RewardModel, b: RewardModel) -> int:
    if (a.tokenizer.get_vocab() != b.tokenizer.get_vocab() or a.tokenizer.chat_template != b.tokenizer.chat_template
            or (a.max_length, a.max_response_tokens) != (b.max_length, b.max_response_tokens)
            or a.device != b.device or type(a.model) is not type(b.model)):
        return 0
    ma, mb = a.model.base_model, b.model.base_model
    if not all(hasattr(m, "layers") and hasattr(m, "embed_tokens") for m in (ma, mb)):
        return 0
    if not _same_weights(ma.embed_tokens, mb.embed_tokens):
        return 0
    k = 0
    for la, lb in zip(ma.layers, mb.layers):
        if not _same_weights(la, lb):
            break
        k += 1
    return min(k, len(mb.layers) - 1)  # at least the top layer runs again: the tail needs one layer to start from


def _pooled_position(ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """Where a sequence-classification head reads each row: the rightmost token that is not the pad token, as
    transformers pools (the pad token can be the end-of-turn token, so this is not the mask's last 1)."""
    if pad_token_id is None:
        return torch.full((ids.shape[0],), ids.shape[1] - 1, dtype=torch.long, device=ids.device)
    positions = torch.arange(ids.shape[1], device=ids.device)
    return (positions * (ids != pad_token_id)).argmax(-1)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    pa, pb = a.state_dict(), b.state_dict()
    return pa.keys() == pb.keys() and all(pa[n].shape == pb[n].shape and torch.equal(pa[n], pb[n]) for n in pa)


def _top_layers_logits(model, hidden: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
    """The score head's logits at every position when `hidden` (the input to decoder layer `start`) runs through
    layers start.. of `model`'s decoder: the model's own forward on a shortened layer list, so rotary positions and
    the causal/padding mask are built exactly as in a full pass."""
    base = model.base_model
    layers = base.layers
    base.layers = nn.ModuleList(list(layers)[start:])
    try:
        h = base(inputs_embeds=hidden, attention_mask=mask, use_cache=False).last_hidden_state
    finally:
        base.layers = layers
    return model.score(h)
