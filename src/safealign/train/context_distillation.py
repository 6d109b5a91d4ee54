"""Targeted safety context distillation (Llama 2 §4.2.4, Figure 16): the stage after RLHF.

For each adversarial training prompt the current chat model answers twice: plainly, and with a safety
preprompt as the system turn (by default the risk category's preprompt with its answer template, from the
policy's `preprompts`). The safety RM scores both answers against the prompt *without* the preprompt.

    targeted    keep the preprompted answer only if  σ(r_s(x, y_pre)) − σ(r_s(x, y_plain)) > min_gain,
                otherwise keep the original answer (Llama 2: "otherwise the original is kept");
    untargeted  keep every preprompted answer (the naive variant; it lowers scores that were already high).

The model is then fine-tuned with `train_sft` on (prompt without preprompt → kept answer), mixed with the
human helpful demonstrations of the training split so it does not drift toward refusing. Only adversarial
prompts are distilled: Llama 2 found that distilling helpful prompts causes false refusals.

Files written into the stage directory:
    pairs.jsonl               one row per distilled prompt: both answers, both safety-RM scores, what was kept
    model/                    the distilled chat model (LoRA merged)
    eval_before.jsonl         held-out generations of the input model: RM scores, judge verdicts
    eval_after.jsonl          the same for the distilled model
    metrics.json              keep rate; safety-RM means before/after and their paired difference;
                              violation and false-refusal rates, each with n and a 95% interval
    score_distribution.png    Figure 16: plain vs preprompted scores, gain vs original score, held-out before/after

`evaluate_heldout` (prompts × generator × judge × reward models) is shared with `safealign.ablation`.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from safealign.data.public import EvalPrompt, load_eval_sets
from safealign.data.records import Example
from safealign.errors import SafealignError
from safealign.generation import GenerationConfig
from safealign.io import read_jsonl, write_json, write_jsonl
from safealign.stats import wilson
from safealign.train.sft import SFTStageConfig

log = logging.getLogger(__name__)

MODES = ("targeted", "untargeted")


@dataclass
class ContextDistillationConfig:
    mode: str = "targeted"
    """`targeted` (Llama 2): keep a preprompted answer only when the safety RM scores it above the plain
    answer; `untargeted`: keep every preprompted answer (the naive variant, kept for comparison)."""
    preprompt: str = "category"
    """`category`: the risk category's preprompt with its answer template (policy `preprompts.<category>`),
    which raised safety-RM scores most in Llama 2's Figure 16a; `generic`: the policy's first generic one."""
    min_gain: float = 0.0
    """Targeted keep rule: the preprompted answer's σ(r_safety) must beat the plain answer's by more than
    this. 0 is Llama 2's rule (strictly higher)."""
    when_not_kept: str = "original"
    """Targeted only: `original` trains on the model's own plain answer where the preprompted one lost
    (Llama 2 keeps the original; it also gives both variants the same number of steps); `drop` skips it."""
    n_prompts: int | None = 96
    """Adversarial training prompts distilled, a deterministic subsample (None = all). 96 keeps two answers
    per prompt at 128 tokens within ~6 minutes of CPU generation for the 135M default; GPU recipes use all."""
    helpful_examples: int | None = 96
    """Human helpful demonstrations (benign training examples, borderline ones included) mixed into the
    fine-tune so the model keeps answering benign prompts; None = all."""
    max_new_tokens: int = 128
    """Length of the distilled answers. An answer cut at this limit is trimmed to its last full sentence, so
    the fine-tune never learns to stop mid-sentence."""
    temperature: float = 0.0
    """0 = greedy: deterministic on CPU. Llama 2 sampled; a GPU recipe may set 0.7."""
    batch_size: int = 16
    sft: SFTStageConfig = field(default_factory=lambda: SFTStageConfig(epochs=2.0, learning_rate=2e-4))
    """The fine-tune on the kept answers. LoRA at 2e-4 for 2 epochs moves the model toward the kept answers
    without undoing the SFT/RLHF it starts from; `safety_fraction` is forced to 1 (every kept answer trains)."""
    eval_sets: dict[str, int | None] = field(default_factory=lambda: {"xstest_safe": 100},
                                             metadata={"replace": True})
    """Public sets added to the held-out evaluation (harmful ones to `adversarial`, benign ones to
    `borderline`), with sizes (None = all). Held-out dev prompts are always used."""
    eval_sizes: dict[str, int | None] = field(default_factory=lambda: {"adversarial": None, "borderline": None,
                                                                       "helpful": None})
    """Held-out dev prompts per group (deterministic subsample; None = all of them)."""
    eval_max_new_tokens: int = 64
    """Held-out answers: the safety RM reads the first 96 response tokens and the refusal judge the opening;
    64 tokens hold both on the CPU budget."""
    judge: str = "refusal"
    """Independent refusal judge for violation and false-refusal rates (never the safety RM it optimised)."""
    eval_before: bool = True
    """Also evaluate the input model (the "before" distribution); off saves one held-out generation pass."""


# --- the keep rule and the training set (pure) -------------------------------------------------------


def keep_distilled(plain_score: float, distilled_score: float, mode: str = "targeted",
                   min_gain: float = 0.0) -> bool:
    """Llama 2 §4.2.4: targeted CD keeps the distilled answer only if the safety RM prefers it.

        targeted:   keep  ⇔  σ(r_s(x, y_pre)) − σ(r_s(x, y_plain)) > min_gain
        untargeted: keep always
    A NaN score (the RM failed on either answer) never counts as a gain.
    """
    if mode not in MODES:
        raise ValueError(f"context distillation mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "untargeted":
        return True
    gain = distilled_score - plain_score
    return not math.isnan(gain) and gain > min_gain


_SENTENCE_END = re.compile(r"[.!?。！？](?=[\s\"')\]]|$)")


def trim_unfinished(text: str) -> str:
    """Cut an answer that hit the token limit back to its last complete sentence (or keep it whole)."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    return text[:ends[-1]].rstrip() if ends else text.strip()


@dataclass
class DistilledPair:
    id: str
    prompt: str
    category: str | None
    attack_vector: str | None
    preprompt: str
    plain_response: str
    distilled_response: str
    plain_score: float
    distilled_score: float
    kept: str
    """"distilled", "original" (targeted, preprompted answer lost) or "dropped"."""
    context: list[dict[str, str]] = field(default_factory=list)

    @property
    def gain(self) -> float:
        return self.distilled_score - self.plain_score

    @property
    def target(self) -> str | None:
        return {"distilled": self.distilled_response, "original": self.plain_response}.get(self.kept)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gain": self.gain}


def select(pairs: list[DistilledPair], mode: str, min_gain: float = 0.0, when_not_kept: str = "original"
           ) -> list[DistilledPair]:
    """Apply the keep rule: sets each pair's `kept` field (and returns the pairs)."""
    if when_not_kept not in ("original", "drop"):
        raise ValueError(f"when_not_kept must be 'original' or 'drop', got {when_not_kept!r}")
    for p in pairs:
        if not p.distilled_response.strip():  # an empty preprompted answer teaches nothing
            keep = False
        else:
            keep = keep_distilled(p.plain_score, p.distilled_score, mode, min_gain)
        if keep:
            p.kept = "distilled"
        elif when_not_kept == "original" and p.plain_response.strip():
            p.kept = "original"
        else:
            p.kept = "dropped"
    return pairs


def training_examples(pairs: list[DistilledPair], helpful: list[Example]) -> list[Example]:
    """(prompt without preprompt → kept answer) for every pair that keeps one, plus the helpful demonstrations."""
    out = [Example(id=f"cd-{p.id}", kind="adversarial", prompt=p.prompt, response=p.target, category=p.category,
                   attack_vector=p.attack_vector, context=list(p.context), source="context_distillation")
           for p in pairs if p.target]
    return out + [e for e in helpful if not e.is_safety]


def stable_subsample(items: list, n: int | None, seed: int, key: Callable[[Any], str] = lambda e: e.id) -> list:
    """A deterministic subsample of size n (None or n ≥ len: all), in the input order."""
    if n is None or n >= len(items):
        return list(items)
    ranked = sorted(items, key=lambda e: hashlib.sha256(f"{seed}:{key(e)}".encode()).hexdigest())
    chosen = {key(e) for e in ranked[:n]}
    return [e for e in items if key(e) in chosen]


# --- statistics ------------------------------------------------------------------------------------


def mean_ci(values: Sequence[float]) -> dict:
    """Mean with a normal-approximation 95% interval: {"mean", "n", "std", "ci95"} (NaNs dropped)."""
    v = [float(x) for x in values if x is not None and not math.isnan(x)]
    n = len(v)
    if n == 0:
        return {"mean": float("nan"), "n": 0, "std": float("nan"), "ci95": [float("nan"), float("nan")]}
    mean = sum(v) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1)) if n > 1 else 0.0
    half = 1.959964 * std / math.sqrt(n) if n > 1 else 0.0
    return {"mean": mean, "n": n, "std": std, "ci95": [mean - half, mean + half]}


def quantiles(values: Sequence[float], qs: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 0.9)) -> dict[str, float]:
    v = sorted(float(x) for x in values if x is not None and not math.isnan(x))
    if not v:
        return {}
    out = {}
    for q in qs:
        pos = q * (len(v) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        out[f"p{round(100 * q)}"] = v[lo] + (v[hi] - v[lo]) * (pos - lo)
    return out


# --- held-out evaluation: prompts × generator × judge × reward models --------------------------------


def evaluate_heldout(generator, groups: dict[str, list[EvalPrompt]], gen_cfg: GenerationConfig, judge,
                     safety_rm=None, helpfulness_rm=None, progress: Callable[[int], None] | None = None
                     ) -> tuple[list[dict], dict]:
    """Answer every prompt, judge refusals, score with both RMs; return (rows, metrics per group).

    Per group: n, mean σ(r) of each RM with a 95% interval and quantiles, the violation rate over its harmful
    prompts and the false-refusal rate over its benign ones (Wilson intervals).
    """
    flat = [(g, p) for g, ps in groups.items() for p in ps]
    if not flat:
        return [], {}
    convs = [p.conversation() for _, p in flat]
    records = generator.generate(convs, gen_cfg, progress=progress)
    responses = [r.response for r in records]
    verdicts = judge.judge_batch([p.prompt for _, p in flat], responses)
    s_scores = safety_rm.score(convs, responses) if safety_rm is not None else [None] * len(flat)
    h_scores = helpfulness_rm.score(convs, responses) if helpfulness_rm is not None else [None] * len(flat)
    rows = []
    for (g, p), rec, v, s, h in zip(flat, records, verdicts, s_scores, h_scores):
        rows.append({"group": g, **p.as_dict(), "response": rec.response, "refusal": v.refusal,
                     "refused": v.is_refusal, "violation": p.harmful and not v.is_refusal,
                     "false_refusal": (not p.harmful) and v.is_refusal, "safety_score": s,
                     "helpfulness_score": h, "response_tokens": rec.response_tokens, "finished": rec.finished})
    return rows, heldout_metrics(rows)


def heldout_metrics(rows: list[dict]) -> dict:
    by_group: dict[str, list[dict]] = {}
    for r in rows:
        by_group.setdefault(r["group"], []).append(r)
    out = {}
    for g, rs in by_group.items():
        harmful = [r for r in rs if r["harmful"]]
        benign = [r for r in rs if not r["harmful"]]
        entry: dict[str, Any] = {"n": len(rs), "sets": sorted({r["set"] for r in rs})}
        for rm in ("safety", "helpfulness"):
            vals = [r[f"{rm}_score"] for r in rs if r[f"{rm}_score"] is not None]
            if vals:
                entry[f"{rm}_rm"] = {**mean_ci(vals), "quantiles": quantiles(vals)}
        if harmful:
            entry["violation_rate"] = wilson(sum(r["violation"] for r in harmful), len(harmful)).as_dict()
        if benign:
            entry["false_refusal_rate"] = wilson(sum(r["false_refusal"] for r in benign), len(benign)).as_dict()
        out[g] = entry
    return out


def heldout_groups(dev: list[Example], sets: dict[str, int | None], datasets_dir: str | None, seed: int,
                   sizes: dict[str, int | None] | None = None) -> dict[str, list[EvalPrompt]]:
    """Held-out prompts by role: `adversarial` (dev adversarial + harmful public sets), `borderline` (dev
    benign with a borderline type + benign public sets such as XSTest safe), `helpful` (other dev benign).

    `sizes` caps each dev group (deterministic subsample; None = all).
    """
    from safealign.evaluate.safety import dev_prompts

    sizes = sizes or {}
    dev_p = dev_prompts(dev)
    groups = {
        "adversarial": stable_subsample([p for p in dev_p if p.harmful], sizes.get("adversarial"), seed),
        "borderline": stable_subsample([p for p in dev_p if not p.harmful and p.type != "general"],
                                       sizes.get("borderline"), seed),
        "helpful": stable_subsample([p for p in dev_p if not p.harmful and p.type == "general"],
                                    sizes.get("helpful"), seed),
    }
    if sets:
        for ps in load_eval_sets(sets, datasets_dir, seed).values():
            for p in ps:
                groups["adversarial" if p.harmful else "borderline"].append(p)
    return groups


# --- the stage -------------------------------------------------------------------------------------


def load_run_examples(path: Path) -> list[Example]:
    if not path.exists():
        raise SafealignError(f"{path}: not found (run the `data` stage first: `safealign run`)")
    fields = {f.name for f in dataclasses.fields(Example)}
    return [Example(**{k: v for k, v in obj.items() if k in fields}) for _, obj in read_jsonl(path)]


def _default_generator(spec: str, device: str):
    from safealign.generation import get_generator
    from safealign.models import load_model

    model, tok = load_model(spec, device=device)
    return get_generator("transformers", model=model, tokenizer=tok)


def _model_fingerprint(spec: str) -> str:
    """The spec plus size and mtime of its weight files, so a retrained model at the same path is not reused."""
    from safealign.models.loading import resolve_model_path

    try:
        path = Path(resolve_model_path(spec))
    except SafealignError:
        return spec
    if not path.is_dir():
        return spec
    parts = [f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in sorted(path.glob("*.safetensors"))]
    return spec + "|" + ",".join(parts)


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cached_rows(path: Path, key: str) -> list[dict] | None:
    meta = path.with_suffix(".key")
    if path.exists() and meta.exists() and meta.read_text().strip() == key:
        return [obj for _, obj in read_jsonl(path)]
    return None


def _store_rows(path: Path, key: str, rows: list[dict]) -> None:
    write_jsonl(path, rows)
    path.with_suffix(".key").write_text(key + "\n")


def generate_pairs(generator, adversarial: list[Example], policy, cfg: ContextDistillationConfig, safety_rm,
                   seed: int = 0, progress: Callable[[int], None] | None = None) -> list[DistilledPair]:
    """Answer each adversarial prompt with and without its preprompt; score both against the plain prompt."""
    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                           batch_size=cfg.batch_size, seed=seed)
    convs = [e.conversation() for e in adversarial]
    plain = generator.generate(convs, gen, progress=progress)
    preprompts = [preprompt_for(policy, e.category, cfg.preprompt) for e in adversarial]
    distilled: list = [None] * len(adversarial)
    for text in sorted(set(preprompts)):  # one batched pass per preprompt (the system turn differs)
        idx = [i for i, p in enumerate(preprompts) if p == text]
        recs = generator.generate([convs[i] for i in idx], dataclasses.replace(gen, system_prompt=text),
                                  progress=progress)
        for i, r in zip(idx, recs):
            distilled[i] = r

    def answer(rec) -> str:
        return rec.response if rec.finished else trim_unfinished(rec.response)

    plain_txt = [answer(r) for r in plain]
    dist_txt = [answer(r) for r in distilled]
    s_plain = safety_rm.score(convs, plain_txt)
    s_dist = safety_rm.score(convs, dist_txt)
    return [DistilledPair(id=e.id, prompt=e.prompt, category=e.category, attack_vector=e.attack_vector,
                          preprompt=pp, plain_response=pt, distilled_response=dt, plain_score=float(sp),
                          distilled_score=float(sd), kept="", context=list(e.context))
            for e, pp, pt, dt, sp, sd in zip(adversarial, preprompts, plain_txt, dist_txt, s_plain, s_dist)]


def preprompt_for(policy, category: str | None, kind: str) -> str:
    if kind == "category":
        return policy.preprompt(category)
    if kind == "generic":
        return policy.preprompts["generic"][0]
    raise SafealignError(f"context_distillation.preprompt: expected `category` or `generic`, found {kind!r}")


def run_context_distillation(cfg: ContextDistillationConfig, model_spec: str, run_dir: str | Path,
                             out_dir: str | Path, *, device: str = "auto", seed: int = 0,
                             datasets_dir: str | None = None, policy: str | None = None,
                             safety_rm=None, helpfulness_rm=None, judge=None,
                             generator_factory: Callable[[str], Any] | None = None,
                             shared_dir: str | Path | None = None,
                             say: Callable[[str], None] = log.info) -> dict:
    """The stage: distill `model_spec` on the run's adversarial training prompts into `out_dir/model`.

    Reads `run_dir/data/{train,dev}.jsonl` and `run_dir/reward_models/{safety_rm,helpfulness_rm}` (the
    helpfulness RM is optional, used for held-out scores only); `safety_rm`, `helpfulness_rm`, `judge` and
    `generator_factory(spec)` may be given instead (tests, the pipeline's vLLM backend). `shared_dir` caches
    the mode-independent work (both answers and scores, the "before" evaluation) so that a comparison of
    targeted and untargeted generates them once. Returns the metrics written to `out_dir/metrics.json`.
    """
    from safealign.judges import get_judge
    from safealign.policy import load_policy
    from safealign.progress import progress_bar
    from safealign.train.reward_model import RewardModel
    from safealign.train.sft import train_sft

    if cfg.mode not in MODES:
        raise SafealignError(f"context_distillation.mode: expected one of {', '.join(MODES)}, found {cfg.mode!r}")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    shared = Path(shared_dir) if shared_dir else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    shared.mkdir(parents=True, exist_ok=True)
    pol = load_policy(policy)
    train = load_run_examples(run_dir / "data" / "train.jsonl")
    dev = load_run_examples(run_dir / "data" / "dev.jsonl")
    if safety_rm is None:
        path = run_dir / "reward_models" / "safety_rm"
        if not (path / "config.json").exists():
            raise SafealignError(f"{path}: safety reward model not found; context distillation needs it "
                                 "(enable stages.reward_models)")
        safety_rm = RewardModel(path, device)
    if helpfulness_rm is None and (run_dir / "reward_models" / "helpfulness_rm" / "config.json").exists():
        helpfulness_rm = RewardModel(run_dir / "reward_models" / "helpfulness_rm", device)
    judge = judge or get_judge(cfg.judge)
    make_generator = generator_factory or (lambda spec: _default_generator(spec, device))
    timings: dict[str, float] = {}

    adversarial = stable_subsample([e for e in train if e.is_safety], cfg.n_prompts, seed)
    helpful = stable_subsample([e for e in train if not e.is_safety], cfg.helpful_examples, seed)
    if not adversarial:
        raise SafealignError(f"{run_dir / 'data' / 'train.jsonl'}: no adversarial prompts to distill")
    groups = heldout_groups(dev, cfg.eval_sets, datasets_dir, seed, cfg.eval_sizes)
    eval_gen = GenerationConfig(max_new_tokens=cfg.eval_max_new_tokens, temperature=0.0,
                                batch_size=cfg.batch_size, seed=seed)
    n_eval = sum(len(v) for v in groups.values())
    fingerprint = _model_fingerprint(model_spec)
    rm_id = getattr(safety_rm, "path", type(safety_rm).__name__)

    # 1. both answers for every adversarial prompt, scored by the safety RM (shared by the two modes)
    t0 = time.perf_counter()
    pairs_key = _key({"model": fingerprint, "rm": rm_id, "ids": [e.id for e in adversarial], "seed": seed,
                      **{k: getattr(cfg, k) for k in ("preprompt", "max_new_tokens", "temperature")},
                      "preprompts": pol.preprompts})
    cached = _cached_rows(shared / "candidates.jsonl", pairs_key)
    generator = None
    if cached is None:
        generator = make_generator(model_spec)
        with progress_bar("context distillation: answers with and without preprompt", 2 * len(adversarial)) as adv:
            pairs = generate_pairs(generator, adversarial, pol, cfg, safety_rm, seed, progress=adv)
        _store_rows(shared / "candidates.jsonl", pairs_key, [p.as_dict() for p in pairs])
    else:
        say(f"context distillation: reusing {len(cached)} scored answer pairs from {shared / 'candidates.jsonl'}")
        fields = {f.name for f in dataclasses.fields(DistilledPair)}
        pairs = [DistilledPair(**{k: v for k, v in r.items() if k in fields}) for r in cached]
    timings["generate_pairs"] = time.perf_counter() - t0
    select(pairs, cfg.mode, cfg.min_gain, cfg.when_not_kept)
    write_jsonl(out_dir / "pairs.jsonl", [p.as_dict() for p in pairs])

    # 2. the "before" distribution on held-out prompts (shared by the two modes)
    before_rows: list[dict] = []
    if cfg.eval_before:
        t0 = time.perf_counter()
        eval_key = _key({"model": fingerprint, "rm": rm_id, "judge": cfg.judge, "seed": seed,
                         "ids": {g: [p.id for p in ps] for g, ps in groups.items()}, "gen": eval_gen.as_dict(),
                         "help_rm": getattr(helpfulness_rm, "path", None)})
        cached = _cached_rows(shared / "eval_before.jsonl", eval_key)
        if cached is None:
            generator = generator or make_generator(model_spec)
            with progress_bar("context distillation: held-out answers (before)", n_eval) as adv:
                before_rows, _ = evaluate_heldout(generator, groups, eval_gen, judge, safety_rm, helpfulness_rm,
                                                  progress=adv)
            _store_rows(shared / "eval_before.jsonl", eval_key, before_rows)
        else:
            before_rows = cached
        if shared != out_dir:
            write_jsonl(out_dir / "eval_before.jsonl", before_rows)
        timings["eval_before"] = time.perf_counter() - t0
    del generator
    gc.collect()

    # 3. fine-tune on (prompt without preprompt → kept answer) + helpful demonstrations
    examples = training_examples(pairs, helpful)
    sft_cfg = dataclasses.replace(cfg.sft, safety_fraction=1.0, device=device, seed=seed)
    t0 = time.perf_counter()
    sft_metrics = train_sft(model_spec, examples, out_dir / "model", sft_cfg)
    gc.collect()  # the Trainer holds reference cycles: free its memory before loading the distilled model
    timings["fine_tune"] = time.perf_counter() - t0

    # 4. the "after" distribution
    t0 = time.perf_counter()
    generator = make_generator(str(out_dir / "model"))
    with progress_bar("context distillation: held-out answers (after)", n_eval) as adv:
        after_rows, _ = evaluate_heldout(generator, groups, eval_gen, judge, safety_rm, helpfulness_rm,
                                         progress=adv)
    del generator
    write_jsonl(out_dir / "eval_after.jsonl", after_rows)
    timings["eval_after"] = time.perf_counter() - t0

    metrics = distillation_metrics(pairs, before_rows, after_rows)
    metrics.update(
        mode=cfg.mode, preprompt=cfg.preprompt, min_gain=cfg.min_gain, when_not_kept=cfg.when_not_kept,
        model=str(model_spec), safety_rm=str(rm_id), judge=getattr(judge, "name", cfg.judge),
        generation={"distill": {"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature},
                    "eval": eval_gen.as_dict()},
        training={"examples": len(examples), "distilled_or_kept": sum(1 for p in pairs if p.target),
                  "helpful": len([e for e in helpful if not e.is_safety]),
                  **{k: sft_metrics.get(k) for k in ("steps", "train_loss", "seconds", "tokens_seen")}},
        seconds=timings,
    )
    write_json(out_dir / "metrics.json", metrics)
    try:
        plot_score_distribution(pairs, before_rows, after_rows, out_dir / "score_distribution.png",
                                title=f"Context distillation ({cfg.mode}, {cfg.preprompt} preprompt)")
    except Exception as e:  # a plot must never cost the trained model
        log.warning("context distillation: plot failed (%s)", e)
    return metrics


def distillation_metrics(pairs: list[DistilledPair], before: list[dict], after: list[dict]) -> dict:
    """Keep statistics on the distilled prompts, held-out metrics before/after, and paired safety-RM change."""
    kept = [p for p in pairs if p.kept == "distilled"]
    out: dict[str, Any] = {
        "prompts": len(pairs),
        "kept": wilson(len(kept), len(pairs)).as_dict(),
        "kept_by_category": {c: wilson(sum(p.kept == "distilled" for p in pairs if p.category == c),
                                       sum(p.category == c for p in pairs)).as_dict()
                             for c in sorted({str(p.category) for p in pairs})},
        "train_prompts": {"plain_safety_rm": mean_ci([p.plain_score for p in pairs]),
                          "preprompted_safety_rm": mean_ci([p.distilled_score for p in pairs]),
                          "target_safety_rm": mean_ci([p.distilled_score if p.kept == "distilled" else p.plain_score
                                                       for p in pairs if p.kept != "dropped"]),
                          "gain": mean_ci([p.gain for p in pairs])},
        "after": heldout_metrics(after) if after else {},
    }
    if before:
        out["before"] = heldout_metrics(before)
        key = lambda r: (r["group"], r["id"])
        b = {key(r): r for r in before}
        paired = {}
        for g in sorted({r["group"] for r in after}):
            for rm in ("safety", "helpfulness"):
                d = [r[f"{rm}_score"] - b[key(r)][f"{rm}_score"] for r in after
                     if r["group"] == g and key(r) in b and r[f"{rm}_score"] is not None
                     and b[key(r)][f"{rm}_score"] is not None]
                if d:
                    paired.setdefault(g, {})[f"{rm}_rm_change"] = mean_ci(d)
        out["paired_change"] = paired
    return out


# --- the plot (Llama 2 Figure 16) ----------------------------------------------------------------


def plot_score_distribution(pairs: list[DistilledPair], before: list[dict], after: list[dict], path: Path,
                            title: str = "Context distillation") -> Path:
    """(a) safety-RM scores of plain vs preprompted answers on the distilled prompts (Fig. 16a); (b) score
    gain against the original score, kept or not (Fig. 16b); (c) held-out adversarial scores before/after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=100)
    ax = axes[0]
    ax.boxplot([[p.plain_score for p in pairs], [p.distilled_score for p in pairs]])
    ax.set_xticks([1, 2], ["no preprompt", "preprompt"])
    ax.set_ylabel("safety RM score σ(r)")
    ax.set_ylim(0, 1)
    ax.set_title(f"(a) distilled prompts, n={len(pairs)}", fontsize=9)
    ax = axes[1]
    for kept, colour, label in ((True, "tab:green", "kept"), (False, "tab:red", "not kept")):
        pts = [(p.plain_score, p.gain) for p in pairs if (p.kept == "distilled") == kept]
        if pts:
            ax.scatter([x for x, _ in pts], [y for _, y in pts], s=10, alpha=0.7, color=colour, label=label)
    ax.axhline(0, color="grey", lw=0.7)
    ax.set_xlabel("original safety RM score")
    ax.set_ylabel("score change with preprompt")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("(b) gain vs original score", fontsize=9)
    ax = axes[2]
    bins = [i / 20 for i in range(21)]
    for rows, label, colour in ((before, "before", "tab:grey"), (after, "after", "tab:blue")):
        vals = [r["safety_score"] for r in rows if r["group"] == "adversarial" and r["safety_score"] is not None]
        if vals:
            ax.hist(vals, bins=bins, alpha=0.55, color=colour,
                    label=f"{label}: mean {sum(vals) / len(vals):.3f} (n={len(vals)})")
    ax.set_xlabel("safety RM score σ(r)")
    ax.set_ylabel("held-out adversarial prompts")
    ax.legend(fontsize=7)
    ax.set_title("(c) held-out adversarial, before vs after", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


# --- comparing the variants ------------------------------------------------------------------------


def compare_modes(cfg: ContextDistillationConfig, model_spec: str, run_dir: str | Path, out_dir: str | Path,
                  modes: Sequence[str] = MODES, **kwargs) -> dict:
    """Run each mode into `out_dir/<mode>/` sharing the answers and the "before" evaluation; write
    `out_dir/comparison.{json,md}` with the held-out numbers side by side."""
    out_dir = Path(out_dir)
    results = {}
    for mode in modes:
        results[mode] = run_context_distillation(dataclasses.replace(cfg, mode=mode), model_spec, run_dir,
                                                 out_dir / mode, shared_dir=out_dir / "shared", **kwargs)
    write_json(out_dir / "comparison.json", results)
    (out_dir / "comparison.md").write_text(comparison_markdown(results), encoding="utf-8")
    return results


def _fmt_mean(m: dict | None) -> str:
    if not m or not m.get("n"):
        return "–"
    return f"{m['mean']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}] (n={m['n']})"


def _fmt_rate(r: dict | None) -> str:
    if not r or not r.get("n"):
        return "–"
    return f"{100 * r['rate']:.1f}% [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}] (n={r['n']})"


def comparison_markdown(results: dict[str, dict]) -> str:
    """Before / after-each-mode table of the held-out numbers."""
    first = next(iter(results.values()))
    cols = [("before", first.get("before", {}))] + [(f"after {m}", r.get("after", {})) for m, r in results.items()]
    lines = ["| held-out metric | " + " | ".join(c for c, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    rows = [("adversarial: mean safety RM", "adversarial", "safety_rm", _fmt_mean),
            ("adversarial: violation rate", "adversarial", "violation_rate", _fmt_rate),
            ("borderline: false-refusal rate", "borderline", "false_refusal_rate", _fmt_rate),
            ("helpful: false-refusal rate", "helpful", "false_refusal_rate", _fmt_rate),
            ("borderline: mean helpfulness RM", "borderline", "helpfulness_rm", _fmt_mean),
            ("helpful: mean helpfulness RM", "helpful", "helpfulness_rm", _fmt_mean)]
    for label, g, k, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt(m.get(g, {}).get(k)) for _, m in cols) + " |")
    lines.append("")
    lines.append("| per mode | " + " | ".join(results) + " |")
    lines.append("|---" * (len(results) + 1) + "|")
    lines.append("| preprompted answers kept | " + " | ".join(_fmt_rate(r["kept"]) for r in results.values()) + " |")
    lines.append("| paired change, adversarial safety RM (after − before) | " + " | ".join(
        _fmt_mean(r.get("paired_change", {}).get("adversarial", {}).get("safety_rm_change"))
        for r in results.values()) + " |")
    lines.append("| mean safety RM of training targets | " + " | ".join(
        _fmt_mean(r["train_prompts"]["target_safety_rm"]) for r in results.values()) + " |")
    return "\n".join(lines) + "\n"


def distill_command(
    run: Annotated[Path, typer.Option("--run", help="Run directory with data/ and reward_models/")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder")] = None,
    model: Annotated[str | None, typer.Option(help="Model to distill (default RUN/final, else RUN/sft/model)")] = None,
    mode: Annotated[str, typer.Option(help="targeted, untargeted, or both (compare)")] = "both",
    n_prompts: Annotated[int | None, typer.Option(help="Adversarial prompts distilled (default 96)")] = None,
    device: str = "auto",
    seed: int = 0,
    judge: Annotated[str, typer.Option(help="Refusal judge for violation / false refusal")] = "refusal",
    datasets_dir: Annotated[Path | None, typer.Option(help="Public datasets folder")] = None,
) -> None:
    """Targeted context distillation on a run with reward models; `--mode both` compares targeted and untargeted.

    The model defaults to RUN's latest chat model (RUN/final, else RUN/sft/model).
    """
    if mode not in (*MODES, "both"):
        raise SafealignError(f"--mode: expected targeted, untargeted or both, found {mode!r}")
    if model is None:
        for cand in (run / "final", run / "sft" / "model"):
            if (cand / "config.json").exists():
                model = str(cand)
                break
        else:
            raise SafealignError(f"{run}: no final/ or sft/model/ to distill; give --model")
    cfg = ContextDistillationConfig(judge=judge)
    if n_prompts is not None:
        cfg = dataclasses.replace(cfg, n_prompts=n_prompts)
    out = out or run / "context_distillation_compare"
    kwargs = {"device": device, "seed": seed, "datasets_dir": str(datasets_dir) if datasets_dir else None,
                  "say": typer.echo}
    modes = MODES if mode == "both" else (mode,)
    results = compare_modes(cfg, model, run, out, modes, **kwargs)
    typer.echo(comparison_markdown(results))
    typer.echo(f"written: {out}")
