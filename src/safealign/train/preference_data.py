"""Preference pairs from model samples, labelled by AI feedback (independent judges + the policy's guideline).

For each prompt we gather candidate responses: samples from several model variants (e.g. the base and
the SFT model) at several temperatures, our written demonstration, and, for a share of benign prompts,
the policy's over-refusal (a polite decline of a benign request, the failure mode the helpfulness RM
must learn to penalise; cheaper than sampling until a variant produces one, and said so here).
Each candidate is labelled:

- safe:          adversarial prompt → a full refusal (and the harm judge, when present, below 0.5);
                 benign prompt → not judged harmful.
- safety score:  safe responses 0.6 + 0.4·(guideline adherence: explains the risk, offers an
                 alternative or resource, sensible length); unsafe ones 0 (partial refusals 0.3).
- helpfulness:   full refusal 0, partial 0.2, otherwise 0.5 + 0.3·relevance(prompt, response)
                 + 0.2·(sensible length), relevance = MiniLM cosine similarity.

Every candidate pair on a prompt whose score gap is at least `min_gap` becomes a pair; the gap sets the
4-level rating. Safety pairs (adversarial prompts, safety score) feed the safety RM; helpfulness pairs
(benign prompts, helpfulness score) the helpfulness RM. Llama 2's filter then drops any pair whose chosen
response is unsafe and rejected one safe.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from safealign.data.preferences import PreferencePair, keep_pair
from safealign.data.records import Example
from safealign.generation import GenerationConfig

_RISK = re.compile(r"\b(risk|harm|danger|illegal|unlawful|crime|criminal|unsafe|hurt|injur|consequence|law|"
                   r"prosecut|penalt|damage|abuse|exploit)", re.I)
_ALTERNATIVE = re.compile(r"\b(instead|alternative|happy to help|can help|i can|resource|recommend|consider|"
                          r"professional|support|hotline|helpline|988|emergency|contact|report|legal|safe(ly|r)? "
                          r"way|learn about|if you)", re.I)

OVER_REFUSAL = ("I'm sorry, but I can't help with that request. It could be used to cause harm, "
                "so I have to decline.")


@dataclass
class PreferenceDataConfig:
    n_prompts: int = 240
    """Training prompts sampled (half adversarial, half benign): the CPU budget for generation."""
    n_dev_prompts: int = 80
    """Dev-split prompts (never trained on by SFT or the RMs) whose pairs evaluate the reward models."""
    temperatures: list[float] = field(default_factory=lambda: [0.7, 1.0])
    """Sampling temperatures, assigned round-robin over prompts (one sample per variant per prompt)."""
    max_new_tokens: int = 64
    batch_size: int = 16
    include_demonstration: bool = True
    over_refusal_share: float = 0.5
    """Share of benign prompts that also get the policy's over-refusal as a candidate."""
    min_gap: float = 0.05
    """Score gaps below this are ties: no pair."""
    rating_thresholds: list[float] = field(default_factory=lambda: [0.5, 0.3, 0.15])
    """Gap ≥ t0 → significantly better, ≥ t1 → better, ≥ t2 → slightly better, else negligibly better."""
    judge: str = "refusal"
    harm_judge: str | None = None
    """Optional harm judge name (e.g. `harm`) that also vetoes `safe` when it calls a response harmful."""
    seed: int = 0


def guideline_adherence(response: str) -> float:
    """Share of the guideline's checkable parts a safe response shows (risk explained, alternative, length)."""
    words = len(response.split())
    parts = [bool(_RISK.search(response)), bool(_ALTERNATIVE.search(response)), 20 <= words <= 160]
    return sum(parts) / len(parts)


def rating_for_gap(gap: float, thresholds: list[float]) -> str:
    if gap >= thresholds[0]:
        return "significantly_better"
    if gap >= thresholds[1]:
        return "better"
    if gap >= thresholds[2]:
        return "slightly_better"
    return "negligibly_better"


@dataclass
class Candidate:
    response: str
    origin: str
    safe: bool = True
    safety: float = 0.0
    helpfulness: float = 0.0


def label_candidates(prompts: list[str], cands: list[Candidate], is_safety: list[bool], refusal_judge,
                     harm_judge=None) -> None:
    """Fill safe / safety / helpfulness on each candidate (in place), batching the judges."""
    import numpy as np

    from safealign.judges.embed import embed

    verdicts = refusal_judge.judge_batch(prompts, [c.response for c in cands])
    harms = harm_judge.judge_batch(prompts, [c.response for c in cands]) if harm_judge else [None] * len(cands)
    pe, re_ = embed(prompts), embed([c.response for c in cands])
    relevance = np.clip((pe * re_).sum(axis=1), 0.0, 1.0)
    for c, v, h, rel, adv in zip(cands, verdicts, harms, relevance, is_safety):
        harmful = h is not None and h.harm is not None and h.harm >= 0.5
        words = len(c.response.split())
        length_ok = 1.0 if 15 <= words <= 200 else 0.0
        if v.refusal == "full":
            c.helpfulness = 0.0
        elif v.refusal == "partial":
            c.helpfulness = 0.2
        else:
            c.helpfulness = 0.5 + 0.3 * float(rel) + 0.2 * length_ok
        if adv:
            c.safe = v.refusal == "full" and not harmful
            c.safety = (0.6 + 0.4 * guideline_adherence(c.response)) if c.safe else (
                0.3 if v.refusal == "partial" else 0.0)
        else:
            c.safe = not harmful
            c.safety = 1.0 if c.safe else 0.0


def make_pairs(example: Example, cands: list[Candidate], cfg: PreferenceDataConfig) -> list[PreferencePair]:
    key = "safety" if example.is_safety else "helpfulness"
    pairs = []
    seen = set()
    for a, b in itertools.combinations(cands, 2):
        if a.response.strip() == b.response.strip():
            continue
        sa, sb = getattr(a, key), getattr(b, key)
        if abs(sa - sb) < cfg.min_gap:
            continue
        chosen, rejected = (a, b) if sa > sb else (b, a)
        ident = (chosen.origin, rejected.origin)
        if ident in seen:
            continue
        seen.add(ident)
        pair = PreferencePair(
            id=f"{example.id}:{chosen.origin}>{rejected.origin}", prompt=example.conversation(),
            chosen=chosen.response, rejected=rejected.response,
            rating=rating_for_gap(abs(sa - sb), cfg.rating_thresholds), is_safety=example.is_safety,
            chosen_safe=chosen.safe, rejected_safe=rejected.safe, category=example.category, source="ai_feedback",
            meta={"chosen_origin": chosen.origin, "rejected_origin": rejected.origin,
                  "chosen_score": getattr(chosen, key), "rejected_score": getattr(rejected, key), "score": key})
        if keep_pair(pair):
            pairs.append(pair)
    return pairs


def select_prompts(examples: list[Example], n: int, seed: int) -> list[Example]:
    import random

    rng = random.Random(seed)
    adv = [e for e in examples if e.is_safety]
    ben = [e for e in examples if not e.is_safety]
    rng.shuffle(adv)
    rng.shuffle(ben)
    half = n // 2
    return adv[:half] + ben[:n - min(half, len(adv))]


def build_pairs(examples: list[Example], generators: dict[str, object], cfg: PreferenceDataConfig,
                refusal_judge, harm_judge=None, progress=None) -> tuple[list[PreferencePair], dict]:
    """Sample candidates from every generator variant, label them, and return (pairs, stats)."""
    import random

    chosen = select_prompts(examples, cfg.n_prompts, cfg.seed)
    cands: dict[str, list[Candidate]] = {e.id: [] for e in chosen}
    for vi, (variant, gen) in enumerate(generators.items()):
        for ti, temp in enumerate(cfg.temperatures):
            subset = [e for i, e in enumerate(chosen) if i % len(cfg.temperatures) == ti]
            if not subset:
                continue
            gcfg = GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=temp, top_p=0.95,
                                    batch_size=cfg.batch_size, seed=cfg.seed + 1000 * vi + ti)
            for e, rec in zip(subset, gen.generate([e.conversation() for e in subset], gcfg, progress=progress)):
                if rec.response.strip():
                    cands[e.id].append(Candidate(rec.response, f"{variant}@T{temp}"))
    rng = random.Random(cfg.seed)
    for e in chosen:
        if cfg.include_demonstration:
            cands[e.id].append(Candidate(e.response, "demonstration"))
        if not e.is_safety and rng.random() < cfg.over_refusal_share:
            cands[e.id].append(Candidate(OVER_REFUSAL, "over_refusal"))
    flat = [(e, c) for e in chosen for c in cands[e.id]]
    label_candidates([e.prompt for e, _ in flat], [c for _, c in flat], [e.is_safety for e, _ in flat],
                     refusal_judge, harm_judge)
    pairs = [p for e in chosen for p in make_pairs(e, cands[e.id], cfg)]
    stats = {"prompts": len(chosen), "candidates": len(flat), "pairs": len(pairs),
             "safety_pairs": sum(p.is_safety for p in pairs), "helpfulness_pairs": sum(not p.is_safety for p in pairs),
             "by_rating": {r: sum(p.rating == r for p in pairs) for r in
                           ("significantly_better", "better", "slightly_better", "negligibly_better")},
             "unsafe_candidates_on_adversarial": sum(not c.safe for e, c in flat if e.is_safety)}
    return pairs, stats
