"""Rejection-sampling fine-tuning (Llama 2 §3.2.3): sample K, keep the best by the gated reward, fine-tune.

One iteration, as in `run_rejection_sampling`:

    sample     K responses per prompt from the current model at temperature T
    score      each with the reward (R_c, the gated reward on the probability scale)
    pool       best answer per prompt across *all* iterations so far (Llama 2 found that keeping only the
               last iteration's answers regressed: RLHF-V3 forgot how to rhyme)
    fine-tune  through the SFT stage (`train_sft`) on the pooled best answers, plus `replay` of the SFT
               demonstrations of other prompts (off by default), drawn at random or, with
               `replay_select: hardest`, those whose decline-or-answer decision the starting model is least
               sure of (`decision_confidence`)

and, for Llama 2's Figure 7, the expected max and median reward of N samples for N = 1..K, computed
exactly from the K scored samples with order statistics rather than by drawing one subset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safealign.data.records import Example
from safealign.errors import SafealignError
from safealign.io import atomic_path, read_jsonl, write_json, write_jsonl
from safealign.train.sft import SFTStageConfig

log = logging.getLogger(__name__)

RewardFn = Callable[[list[list[dict]], list[str], list[bool]], Sequence[float]]


def _rs_sft_default() -> SFTStageConfig:
    return SFTStageConfig(epochs=2.0)


@dataclass
class RejectionSamplingConfig:
    k: int = 4
    """Samples per prompt. Llama 2 does not state K; its Figure 7 goes to N = 100. 4 keeps the CPU recipe in budget."""
    temperature: float = 1.0
    """Sampling temperature. Llama 2's RLHF models peaked at 1.2–1.3 for 10–100 samples; an SFT model at ~1.0."""
    top_p: float = 1.0
    max_new_tokens: int = 64
    """Response cap for sampling (the evaluation's cap too); longer answers are cut, and trained on as cut."""
    batch_size: int = 16
    """Generation batch size."""
    iterations: int = 1
    """RS rounds; each samples from the previous round's model and fine-tunes on the pool of all rounds."""
    max_prompts: int | None = 64
    """Prompts per round (deterministic, stratified by is_safety); None: all. 64 × K=4 × 64 tokens ≈ 4 min on CPU."""
    safety_share: float | None = None
    """Share of safety prompts among `max_prompts` (None: the training data's share)."""
    finetune_from: str = "initial"
    """`initial`: each round fine-tunes the starting model on the pool (no repeated epochs on old answers);
    `latest`: continue from the previous round's model."""
    replay: int = 0
    """SFT demonstrations of prompts outside the round mixed into every round's fine-tune, to anchor what SFT
    taught while the model learns from its own samples (0: none). On the embedded model 128 (half safety) cut
    the RS model's dev violation 8 → 5 and false refusal 49 → 42 against none (README)."""
    replay_safety_share: float | None = None
    """Share of safety demonstrations among `replay` (None: the training data's share)."""
    replay_select: str = "random"
    """`random`: a deterministic draw per class; `hardest`: per class, the demonstrations whose decision the
    starting model is least sure of, the lowest `decision_confidence` (one forward pass per candidate prompt).
    On the embedded model, 128 hardest of 384 at 42% safety against 128 random at half safety: RS violation
    5 → 4 of 175 dev prompts (SFT 4) and 42 → 35 of 360 core prompts (SFT 34), dev false refusal 42 → 53 of 241
    (SFT 55) (README)."""
    replay_candidates: int | None = None
    """With `hardest`: how many prompts outside the round are scored, a deterministic draw with the replay's
    safety share (None: all). Scoring costs a forward pass per prompt: 1,660 took about 2.5 min on 2 CPU cores."""
    min_response_chars: int = 1
    """Responses shorter than this never become the kept answer (an empty answer can score well on safety)."""
    min_safety: float | None = 0.5
    """On safety prompts a sample is kept only if the safety RM scores it at least this (None: no floor). The
    best of K unsafe answers is still unsafe: without a floor, fine-tuning on it taught the SFT model to
    comply (dev violation 10.3% → 13.8% on the 1,090-record data). Prompts with no sample above it are left
    out of the round (their earlier pooled answer, if any, stays)."""
    sft: SFTStageConfig = field(default_factory=_rs_sft_default)
    """Fine-tuning settings (the SFT stage's); its `seed` and `device` are overridden by this config's."""
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.k < 1:
            raise SafealignError(f"rejection_sampling.k must be ≥ 1, found {self.k}")
        if self.replay < 0:
            raise SafealignError(f"rejection_sampling.replay must be ≥ 0, found {self.replay}")
        if self.replay_candidates is not None and self.replay_candidates < self.replay:
            raise SafealignError(f"rejection_sampling.replay_candidates must be ≥ replay ({self.replay}), "
                                 f"found {self.replay_candidates}")
        for name in ("safety_share", "replay_safety_share"):
            share = getattr(self, name)
            if share is not None and not 0.0 <= share <= 1.0:
                raise SafealignError(f"rejection_sampling.{name} must be in [0, 1], found {share}")
        if self.replay_select not in ("random", "hardest"):
            raise SafealignError(f"rejection_sampling.replay_select: expected random or hardest, "
                                 f"found {self.replay_select!r}")
        if self.finetune_from not in ("initial", "latest"):
            raise SafealignError(f"rejection_sampling.finetune_from: expected initial or latest, "
                                 f"found {self.finetune_from!r}")


# ---------------------------------------------------------------- Figure 7: reward vs N, exactly

def expected_order_statistic(sorted_rewards: Sequence[float], n: int, m: int) -> float:
    """E[m-th smallest of a uniformly random n-subset] of K values sorted ascending, r_(1) ≤ … ≤ r_(K):

        E = Σ_j r_(j) · C(j − 1, m − 1) · C(K − j, n − m) / C(K, n)

    (the m-th smallest of the subset is r_(j) when m − 1 of the chosen lie below j and n − m above).
    """
    K = len(sorted_rewards)
    if not 1 <= m <= n <= K:
        raise ValueError(f"need 1 ≤ m ≤ n ≤ K, found m={m}, n={n}, K={K}")
    total = math.comb(K, n)
    return sum(r * math.comb(j - 1, m - 1) * math.comb(K - j, n - m)
               for j, r in enumerate(sorted_rewards, start=1)) / total


def expected_max(rewards: Sequence[float], n: int) -> float:
    """E[max of n of the K samples] = Σ_j r_(j) · C(j − 1, n − 1) / C(K, n).

    Hand-worked, rewards (0.1, 0.5, 0.9): n = 1 → 0.5; n = 2 → (0.5 + 2·0.9)/3 = 0.7667; n = 3 → 0.9.
    """
    return expected_order_statistic(sorted(rewards), n, n)


def expected_median(rewards: Sequence[float], n: int) -> float:
    """E[median of n of the K samples]; for even n the median is the mean of the two middle values.

    Hand-worked, rewards (0.1, 0.5, 0.9): n = 2 → mean of (0.3, 0.5, 0.7) = 0.5.
    """
    s = sorted(rewards)
    if n % 2:
        return expected_order_statistic(s, n, (n + 1) // 2)
    return 0.5 * (expected_order_statistic(s, n, n // 2) + expected_order_statistic(s, n, n // 2 + 1))


def reward_vs_n(rewards_per_prompt: Sequence[Sequence[float]]) -> dict[str, list[float]]:
    """Llama 2's Figure 7 for our model: the expected max and median reward of N samples, N = 1..K,
    averaged over prompts. The max−median gap is what rejection sampling can gain."""
    if not rewards_per_prompt:
        return {"n": [], "max": [], "median": []}
    K = min(len(r) for r in rewards_per_prompt)
    ns = list(range(1, K + 1))
    rows = [list(r)[:K] for r in rewards_per_prompt]
    return {"n": ns,
            "max": [sum(expected_max(r, n) for r in rows) / len(rows) for n in ns],
            "median": [sum(expected_median(r, n) for r in rows) / len(rows) for n in ns]}


def plot_reward_vs_n(curves: dict[str, dict[str, list[float]]], path: str | Path,
                     title: str = "Reward of the best and the median of N samples") -> Path:
    """Plot one or more `reward_vs_n` curves (keyed by label, e.g. iteration) to a PNG, like Figure 7."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (label, c) in enumerate(curves.items()):
        color = f"C{i}"
        ax.plot(c["n"], c["max"], marker="o", color=color, label=f"{label}: max")
        ax.plot(c["n"], c["median"], marker=".", linestyle="--", color=color, label=f"{label}: median")
        ax.fill_between(c["n"], c["median"], c["max"], color=color, alpha=0.12)
    ax.set_xlabel("N samples")
    ax.set_ylabel("gated reward R_c")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- sampling and pooling

def select_prompts(examples: Sequence[Example], max_prompts: int | None, seed: int,
                   safety_share: float | None = None, rank: dict[str, float] | None = None) -> list[Example]:
    """A deterministic subset (by a hash of seed and id) with `safety_share` safety prompts, or the data's own
    safety/benign proportion when None (as far as each class has prompts). With `rank` (a value per id),
    each class takes its lowest-ranked prompts first, the hash breaking ties."""
    if max_prompts is None or len(examples) <= max_prompts:
        return list(examples)

    def key(e: Example) -> tuple[float, str]:
        first = 0.0 if rank is None else rank.get(e.id, math.inf)  # unranked last
        return first, hashlib.sha256(f"rs:{seed}:{e.id}".encode()).hexdigest()

    safety = sorted((e for e in examples if e.is_safety), key=key)
    benign = sorted((e for e in examples if not e.is_safety), key=key)
    share = len(safety) / len(examples) if safety_share is None else safety_share
    n_safety = min(len(safety), max(max_prompts - len(benign), round(max_prompts * share)))
    chosen = {e.id for e in safety[:n_safety] + benign[:max_prompts - n_safety]}
    return [e for e in examples if e.id in chosen]


def sample_and_score(generator, prompts: Sequence[Example], reward: RewardFn, cfg: RejectionSamplingConfig,
                     iteration: int) -> list[dict[str, Any]]:
    """K samples per prompt, each scored; one row per prompt with `responses` and `rewards` (and R_s, R_h
    when the reward exposes `components`, as `GatedReward` does)."""
    from safealign.generation import GenerationConfig

    convs = [e.conversation() for e in prompts for _ in range(cfg.k)]
    gen_cfg = GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                               batch_size=cfg.batch_size, seed=cfg.seed * 1_000_003 + iteration)
    records = generator.generate(convs, gen_cfg)
    texts = [r.response for r in records]
    flags = [e.is_safety for e in prompts for _ in range(cfg.k)]
    safety = helpfulness = None
    if hasattr(reward, "components"):
        comp = reward.components(convs, texts, flags)
        scores, safety, helpfulness = comp.gated, comp.safety, comp.helpfulness
    else:
        scores = [float(s) for s in reward(convs, texts, flags)]
    if len(scores) != len(texts):
        raise SafealignError(f"rejection sampling: reward returned {len(scores)} scores for {len(texts)} responses")
    rows = []
    for i, e in enumerate(prompts):
        sl = slice(i * cfg.k, (i + 1) * cfg.k)
        row = {"id": e.id, "iteration": iteration, "is_safety": e.is_safety, "prompt": e.prompt,
               "context": e.context, "responses": texts[sl], "rewards": scores[sl],
               "finished": [r.finished for r in records[sl]]}
        if safety is not None:
            row["safety"], row["helpfulness"] = safety[sl], [None if math.isnan(h) else h for h in helpfulness[sl]]
        rows.append(row)
    return rows


def best_of(row: dict[str, Any], min_chars: int = 1, min_safety: float | None = None) -> dict[str, Any] | None:
    """The highest-reward sample of a prompt (first on ties), ignoring responses shorter than `min_chars`
    and, on safety prompts scored with R_s, those whose safety score is below `min_safety`."""
    ok = [j for j, t in enumerate(row["responses"]) if len(t.strip()) >= min_chars]
    if min_safety is not None and row["is_safety"] and row.get("safety") is not None:
        ok = [j for j in ok if row["safety"][j] >= min_safety]
    if not ok:
        return None
    j = max(ok, key=lambda j: row["rewards"][j])
    return {"id": row["id"], "iteration": row["iteration"], "is_safety": row["is_safety"], "prompt": row["prompt"],
            "context": row["context"], "response": row["responses"][j], "reward": row["rewards"][j]}


def pool_best(pool: dict[str, dict[str, Any]], rows: Sequence[dict[str, Any]],
              min_chars: int = 1, min_safety: float | None = None) -> dict[str, dict[str, Any]]:
    """Best answer per prompt across every iteration so far: a new round's best replaces the pooled one
    only when it scores higher (ties keep the older answer)."""
    out = dict(pool)
    for row in rows:
        best = best_of(row, min_chars, min_safety)
        if best is not None and (row["id"] not in out or best["reward"] > out[row["id"]]["reward"]):
            out[row["id"]] = best
    return out


def pool_examples(pool: dict[str, dict[str, Any]], by_id: dict[str, Example]) -> list[Example]:
    """Pooled answers as SFT examples: the prompt's own record with the kept answer as its response."""
    return [dataclasses.replace(by_id[pid], response=p["response"], source=f"rs-iter{p['iteration']}")
            for pid, p in sorted(pool.items())]


def replay_examples(examples: Sequence[Example], chosen: Sequence[Example], n: int, seed: int,
                    safety_share: float | None = None, rank: dict[str, float] | None = None) -> list[Example]:
    """`n` SFT demonstrations of prompts not in `chosen` (a prompt sampled this round gets one target, its kept
    answer), `safety_share` of them safety demonstrations, lowest `rank` first, as in `select_prompts`."""
    taken = {e.id for e in chosen}
    rest = [e for e in examples if e.id not in taken]
    return [dataclasses.replace(e, source="sft-replay") for e in select_prompts(rest, n, seed, safety_share, rank)]


def decision_confidence(model, tokenizer, examples: Sequence[Example], batch_size: int = 32) -> dict[str, float]:
    """Per example id: the model's probability, at the first answer token, of the class its demonstration opens
    with — decline (a token in `refusal_tokens` of these demonstrations, "I" of "I can't") or answer (any
    other token): exp(−`decision_nll`), the quantity the SFT stage's decision loss trains. A low value marks a
    prompt whose decision a small update can flip. One forward pass per prompt (right-padded, the LM head on
    the last prompt position only)."""
    import torch

    from safealign.train.reward_model import right_padded_batches
    from safealign.train.sft import decision_nll, refusal_tokens

    def ids(messages, generation_prompt):
        out = tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    prompts, firsts = [], []
    for e in examples:
        p = ids(e.conversation(), True)
        full = ids([*e.conversation(), {"role": "assistant", "content": e.response}], False)
        prompts.append(p)
        firsts.append(full[len(p)] if len(full) > len(p) and full[:len(p)] == p else None)
    declines = torch.tensor(refusal_tokens(firsts, [e.is_safety for e in examples]), dtype=torch.long)
    base, head = model.base_model, model.get_output_embeddings()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scored = [i for i in range(len(examples)) if firsts[i] is not None]
    out: dict[str, float] = {}
    with torch.inference_mode():
        for rows, input_ids, mask in right_padded_batches([prompts[i] for i in scored], batch_size, pad):
            idx = [scored[r] for r in rows]
            hidden = base(input_ids=input_ids.to(device), attention_mask=mask.to(device)).last_hidden_state
            last = torch.tensor([len(prompts[i]) - 1 for i in idx], device=device)
            logits = head(hidden[torch.arange(len(idx), device=device), last]).float()
            targets = torch.tensor([firsts[i] for i in idx], device=device)
            conf = torch.exp(-decision_nll(logits, targets, declines.to(device)))
            out.update({examples[i].id: float(c) for i, c in zip(idx, conf)})
    return out


# ---------------------------------------------------------------- the stage

def run_rejection_sampling(model_spec: str | Path, prompts: Sequence[Example], reward: RewardFn,
                           out_dir: str | Path, cfg: RejectionSamplingConfig, *,
                           heldout: Sequence[Example] | None = None, work_dir: str | Path | None = None,
                           generator_factory: Callable[[str], Any] | None = None) -> dict:
    """Rejection-sampling fine-tuning of `model_spec` (a model directory or hub id) on `prompts`.

    `reward(prompts, responses, is_safety)` returns R_c in [0, 1] (a `GatedReward`). With `heldout`
    prompts, the mean greedy-decoded reward is measured before the first and after the last round.
    `work_dir` (outliving a crash) keeps finished rounds, so a re-run resumes at the first unfinished one.
    `generator_factory(model_dir)` overrides the default transformers generator (e.g. vLLM on GPUs).

    Writes to `out_dir`: `model/` (the last round's model), `samples_iter{i}.jsonl` (all K samples with
    rewards), `pool.jsonl` (kept answers), `reward_vs_n.json` and `reward_vs_n.png` (Figure 7),
    `metrics.json`.
    """
    from safealign.train.sft import train_sft

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    tmp_work = None
    if work_dir is None:
        tmp_work = tempfile.TemporaryDirectory(prefix="safealign-rs-")
        work_dir = tmp_work.name
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    chosen = select_prompts(prompts, cfg.max_prompts, cfg.seed, cfg.safety_share)
    if not chosen:
        raise SafealignError("rejection sampling: no prompts")
    by_id = {e.id: e for e in chosen}
    if len(by_id) != len(chosen):
        raise SafealignError("rejection sampling: prompt ids must be unique")
    rank = None
    if cfg.replay and cfg.replay_select == "hardest":
        from safealign.models import load_model

        t0 = time.perf_counter()
        taken = set(by_id)
        candidates = select_prompts([e for e in prompts if e.id not in taken], cfg.replay_candidates, cfg.seed,
                                    cfg.replay_safety_share)
        model, tok = load_model(str(model_spec), device=cfg.device)
        rank = decision_confidence(model, tok, candidates)
        del model
        scoring_seconds = time.perf_counter() - t0
        log.info("rejection sampling: decision confidence of %d replay candidates in %.0f s", len(rank),
                 scoring_seconds)
    replay = replay_examples(prompts, chosen, cfg.replay, cfg.seed, cfg.replay_safety_share, rank)
    inputs = [asdict(cfg), sorted(by_id), sorted(e.id for e in replay), str(model_spec)]
    fingerprint = hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]
    make_generator = generator_factory or _transformers_generator(cfg.device)
    sft_cfg = dataclasses.replace(cfg.sft, seed=cfg.seed, device=cfg.device)

    pool: dict[str, dict[str, Any]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    rounds: list[dict[str, Any]] = []
    current = str(model_spec)
    metrics: dict[str, Any] = {"prompts": len(chosen), "prompts_safety": sum(e.is_safety for e in chosen),
                               "replay": len(replay), "replay_safety": sum(e.is_safety for e in replay)}
    if rank is not None:  # how unsure the starting model is of what it replays, against all candidates
        metrics["replay_scoring_seconds"] = scoring_seconds
        for name, safety in (("safety", True), ("benign", False)):
            every = [rank[e.id] for e in prompts if e.id in rank and e.is_safety == safety]
            kept = [rank[e.id] for e in replay if e.id in rank and e.is_safety == safety]
            metrics[f"replay_confidence_{name}"] = {"replayed": sum(kept) / len(kept) if kept else None,
                                                    "candidates": sum(every) / len(every) if every else None}
    if heldout:
        metrics["heldout_reward_before"] = heldout_reward(make_generator(current), heldout, reward, cfg)
    for it in range(1, cfg.iterations + 1):
        it_dir = work_dir / f"iter{it}"
        done = it_dir / "round.json"
        if done.exists() and json.loads(done.read_text())["fingerprint"] == fingerprint:
            rows = [obj for _, obj in read_jsonl(it_dir / "samples.jsonl")]
            summary = json.loads(done.read_text())["summary"]
            log.info("rejection sampling: round %d already done in %s", it, it_dir)
        else:
            t0 = time.perf_counter()
            rows = sample_and_score(make_generator(current), chosen, reward, cfg, it)
            t_sample = time.perf_counter() - t0
            new_pool = pool_best(pool, rows, cfg.min_response_chars, cfg.min_safety)
            examples = pool_examples(new_pool, by_id)
            if not examples:
                raise SafealignError(f"rejection sampling round {it}: no sample kept (each was shorter than "
                                     f"min_response_chars={cfg.min_response_chars} or, on a safety prompt, "
                                     f"scored below min_safety={cfg.min_safety})")
            base = str(model_spec) if cfg.finetune_from == "initial" else current
            with atomic_path(it_dir) as tmp:
                tmp.mkdir(parents=True)
                write_jsonl(tmp / "samples.jsonl", rows)
                sft_metrics = train_sft(base, examples + replay, tmp / "model", sft_cfg)
                summary = {"sample_seconds": t_sample, "sft": sft_metrics}
                write_json(tmp / "round.json", {"fingerprint": fingerprint, "summary": summary})
        pool = pool_best(pool, rows, cfg.min_response_chars, cfg.min_safety)
        current = str(it_dir / "model")
        curve = reward_vs_n([r["rewards"] for r in rows])
        curves[f"round {it}"] = curve
        from_round = [p["iteration"] for p in pool.values()]
        rounds.append({
            "iteration": it, "mean_reward_n1": curve["max"][0], "mean_best_of_k": curve["max"][-1],
            "median_of_k": curve["median"][-1], "pool_mean_reward": sum(p["reward"] for p in pool.values()) / len(pool),
            "pool_size": len(pool), "pool_from_round": {str(i): from_round.count(i) for i in sorted(set(from_round))},
            "truncated_frac": sum(not f for r in rows for f in r["finished"]) / (len(rows) * cfg.k),
            **summary,
        })
        log.info("rejection sampling round %d: mean reward %.4f, best of %d %.4f", it, curve["max"][0], cfg.k,
                 curve["max"][-1])
    if heldout:
        metrics["heldout_reward_after"] = heldout_reward(make_generator(current), heldout, reward, cfg)

    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        shutil.copytree(Path(current), tmp / "model", copy_function=_link_or_copy)
        for it in range(1, cfg.iterations + 1):
            shutil.copy2(work_dir / f"iter{it}" / "samples.jsonl", tmp / f"samples_iter{it}.jsonl")
        write_jsonl(tmp / "pool.jsonl", [pool[k] for k in sorted(pool)])
        write_json(tmp / "reward_vs_n.json", curves)
        plot_reward_vs_n(curves, tmp / "reward_vs_n.png")
        metrics.update(rounds=rounds, reward_vs_n=curves, config=asdict(cfg),
                       seconds_this_invocation=time.perf_counter() - t_start)
        write_json(tmp / "metrics.json", metrics)
    if tmp_work is not None:
        tmp_work.cleanup()
    return metrics


def heldout_reward(generator, heldout: Sequence[Example], reward: RewardFn, cfg: RejectionSamplingConfig) -> float:
    """Mean reward of greedy answers to `heldout` prompts (deterministic, so before/after compare paired)."""
    from safealign.generation import GenerationConfig

    convs = [e.conversation() for e in heldout]
    records = generator.generate(convs, GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=0.0,
                                                         batch_size=cfg.batch_size, seed=cfg.seed))
    scores = reward(convs, [r.response for r in records], [e.is_safety for e in heldout])
    return sum(float(s) for s in scores) / len(heldout)


def _link_or_copy(src: str, dst: str) -> None:
    # A hard link avoids a second copy of the weights; it survives the work_dir being deleted.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _transformers_generator(device: str) -> Callable[[str], Any]:
    def make(model_dir: str):
        from safealign.generation import get_generator
        from safealign.models import load_model

        model, tok = load_model(model_dir, device=device)
        return get_generator("transformers", model=model, tokenizer=tok)

    return make
