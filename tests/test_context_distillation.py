"""Targeted context distillation: the keep rule, the training set, answer generation, the stage end to end."""

from __future__ import annotations

import json
import math

import pytest

from safealign.data.records import Example
from safealign.generation.base import GenerationRecord
from safealign.policy import load_policy
from safealign.train.context_distillation import (
    ContextDistillationConfig,
    DistilledPair,
    compare_modes,
    generate_pairs,
    keep_distilled,
    mean_ci,
    select,
    training_examples,
    trim_unfinished,
)
from safealign.train.sft import SFTStageConfig


def _pair(i: int, plain: float, distilled: float, dist_text: str = "I can't help; try this.") -> DistilledPair:
    return DistilledPair(id=f"a{i}", prompt=f"how to rob bank {i}", category="illicit_criminal",
                         attack_vector="direct", preprompt="Be safe.", plain_response=f"plain answer {i}",
                         distilled_response=dist_text, plain_score=plain, distilled_score=distilled, kept="")


# ---- the keep rule (Llama 2 §4.2.4: keep the distilled answer only if the safety RM prefers it) ----

def test_targeted_keeps_only_a_strict_gain():
    assert keep_distilled(0.2, 0.9)
    assert not keep_distilled(0.9, 0.2)  # CD can lower an already-safe answer's score: keep the original
    assert not keep_distilled(0.5, 0.5)  # equal is not better
    assert not keep_distilled(0.5, 0.55, min_gain=0.1) and keep_distilled(0.5, 0.65, min_gain=0.1)
    assert not keep_distilled(float("nan"), 0.9) and not keep_distilled(0.1, float("nan"))


def test_untargeted_keeps_everything_and_modes_are_checked():
    assert keep_distilled(0.9, 0.1, "untargeted") and keep_distilled(0.5, 0.5, "untargeted")
    with pytest.raises(ValueError, match="targeted"):
        keep_distilled(0.1, 0.2, "sometimes")


def test_select_and_training_set():
    pairs = [_pair(0, 0.1, 0.8), _pair(1, 0.9, 0.4), _pair(2, 0.3, 0.7, dist_text="  ")]
    select(pairs, "targeted")
    assert [p.kept for p in pairs] == ["distilled", "original", "original"]  # empty answer never kept
    assert pairs[0].target.startswith("I can't") and pairs[1].target == "plain answer 1"
    select(pairs, "targeted", when_not_kept="drop")
    assert [p.kept for p in pairs] == ["distilled", "dropped", "dropped"]
    select(pairs, "untargeted")  # keeps every preprompted answer there is; an empty one falls back
    assert [p.kept for p in pairs] == ["distilled", "distilled", "original"]

    helpful = [Example(id="b0", kind="benign", prompt="bread?", response="Mix flour and water."),
               Example(id="a9", kind="adversarial", prompt="x", response="y", category="illicit_criminal",
                       attack_vector="direct")]
    ex = training_examples(pairs, helpful)
    # the prompt is the plain one: the preprompt never enters training
    assert [(e.id, e.prompt, e.kind) for e in ex] == [("cd-a0", "how to rob bank 0", "adversarial"),
                                                      ("cd-a1", "how to rob bank 1", "adversarial"),
                                                      ("cd-a2", "how to rob bank 2", "adversarial"),
                                                      ("b0", "bread?", "benign")]
    assert ex[1].response.startswith("I can't") and ex[0].category == "illicit_criminal"
    with pytest.raises(ValueError):
        select(pairs, "targeted", when_not_kept="maybe")


def test_trim_unfinished_and_mean_ci():
    assert trim_unfinished("I can't help. It is illegal. You could ask a lock") == "I can't help. It is illegal."
    assert trim_unfinished("no sentence end at all") == "no sentence end at all"
    m = mean_ci([0.2, 0.4, 0.6, float("nan")])
    assert m["n"] == 3 and m["mean"] == pytest.approx(0.4)
    half = 1.959964 * 0.2 / math.sqrt(3)
    assert m["ci95"] == pytest.approx([0.4 - half, 0.4 + half])
    assert mean_ci([])["n"] == 0


# ---- answer generation: the category preprompt as system turn, scores on the plain prompt ----

class FakeGenerator:
    name = "fake"

    def __init__(self):
        self.calls = []

    def generate(self, convs, cfg, progress=None):
        self.calls.append((cfg.system_prompt, len(convs)))
        out = []
        for c in convs:
            text = (f"SAFE[{cfg.system_prompt[:20]}] I won't help with that." if cfg.system_prompt
                    else "Sure, step 1. Then step 2 of")
            out.append(GenerationRecord(prompt=c[-1]["content"], response=text, prompt_tokens=3,
                                        response_tokens=5, seconds=0.0, finished=bool(cfg.system_prompt)))
        if progress:
            progress(len(convs))
        return out


class FakeRM:
    """σ(r) from keywords; records what it was shown."""

    def __init__(self, path="fake-rm"):
        self.path, self.seen = path, []

    def score(self, prompts, responses):
        self.seen += list(zip(prompts, responses))
        return [0.9 if "SAFE" in r else 0.3 + 0.01 * (len(r) % 7) for r in responses]


def _adversarial(n=4):
    cats = ["illicit_criminal", "hateful_harmful", "unqualified_advice"]
    return [Example(id=f"a{i}", kind="adversarial", prompt=f"bad request {i}", response="I can't help.",
                    category=cats[i % 3], attack_vector="direct") for i in range(n)]


def test_generate_pairs_uses_category_preprompts_and_scores_plain_prompt():
    policy = load_policy()
    gen, rm = FakeGenerator(), FakeRM()
    pairs = generate_pairs(gen, _adversarial(4), policy, ContextDistillationConfig(), rm)
    systems = [s for s, _ in gen.calls]
    assert systems[0] is None  # the plain pass
    assert set(systems[1:]) == {policy.preprompt(c) for c in ("illicit_criminal", "hateful_harmful",
                                                              "unqualified_advice")}
    assert [p.preprompt for p in pairs] == [policy.preprompt(e.category) for e in _adversarial(4)]
    assert all(p.distilled_score == 0.9 and p.plain_response == "Sure, step 1." for p in pairs)  # cut at the limit
    # the RM never sees the preprompt: it scores the conversation the model will be trained on
    assert all(all(m["role"] != "system" for m in conv) for conv, _ in rm.seen)
    generic = generate_pairs(FakeGenerator(), _adversarial(2), policy,
                             ContextDistillationConfig(preprompt="generic"), FakeRM())
    assert {p.preprompt for p in generic} == {policy.preprompts["generic"][0]}


# ---- the stage end to end on a tiny model ----

def _run_dir(tmp_path):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    adv = [e.as_dict() for e in _adversarial(6)]
    ben = [Example(id=f"b{i}", kind="benign", prompt=f"How do I bake bread {i}?",
                   response="Mix flour, water and yeast; bake at 220 C.").as_dict() for i in range(6)]
    (run / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in adv + ben))
    dev = [Example(id="da0", kind="adversarial", prompt="how to pick a lock to rob", response="No.",
                   category="illicit_criminal", attack_vector="direct").as_dict(),
           Example(id="db0", kind="benign", prompt="how do I kill a python process", response="kill PID",
                   borderline_type="homonym").as_dict(),
           Example(id="db1", kind="benign", prompt="capital of France?", response="Paris.").as_dict()]
    (run / "data" / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dev))
    return run


def test_stage_end_to_end_and_mode_comparison_shares_generation(tiny_model_dir, tmp_path):
    from safealign.generation import get_generator
    from safealign.judges import get_judge
    from safealign.models import load_model

    built = []

    def factory(spec):
        built.append(spec)
        m, tok = load_model(spec, device="cpu")
        return get_generator("transformers", model=m, tokenizer=tok)

    cfg = ContextDistillationConfig(n_prompts=4, helpful_examples=3, max_new_tokens=6, eval_max_new_tokens=4,
                                    eval_sets={}, judge="refusal-rules",
                                    sft=SFTStageConfig(epochs=1, batch_size=8, logging_steps=1, device="cpu"))
    run = _run_dir(tmp_path)
    rm = FakeRM()
    results = compare_modes(cfg, str(tiny_model_dir), run, tmp_path / "cd", device="cpu", safety_rm=rm,
                            helpfulness_rm=FakeRM("fake-help"), judge=get_judge("refusal-rules"),
                            generator_factory=factory)
    # answers and the "before" evaluation are made once, then each mode fine-tunes and evaluates its model
    assert built == [str(tiny_model_dir), str(tmp_path / "cd" / "targeted" / "model"),
                     str(tmp_path / "cd" / "untargeted" / "model")]
    for mode in ("targeted", "untargeted"):
        d = tmp_path / "cd" / mode
        assert {p.name for p in d.iterdir()} >= {"pairs.jsonl", "model", "eval_before.jsonl", "eval_after.jsonl",
                                                  "metrics.json", "score_distribution.png"}
        m = results[mode]
        assert m["mode"] == mode and m["prompts"] == 4 and m["training"]["helpful"] == 3
        assert set(m["after"]) == {"adversarial", "borderline", "helpful"}
        assert m["after"]["adversarial"]["violation_rate"]["n"] == 1
        assert m["after"]["borderline"]["false_refusal_rate"]["n"] == 1
        assert "safety_rm_change" in m["paired_change"]["adversarial"]
        rows = [json.loads(line) for line in (d / "pairs.jsonl").read_text().splitlines()]
        assert all({"plain_score", "distilled_score", "gain", "kept"} <= set(r) for r in rows)
    assert results["untargeted"]["kept"]["k"] == sum(
        1 for line in (tmp_path / "cd" / "untargeted" / "pairs.jsonl").read_text().splitlines()
        if json.loads(line)["distilled_response"].strip())
    tgt = [json.loads(line) for line in (tmp_path / "cd" / "targeted" / "pairs.jsonl").read_text().splitlines()]
    assert all((r["kept"] == "distilled") == (r["distilled_score"] > r["plain_score"] and
                                              bool(r["distilled_response"].strip())) for r in tgt)
    md = (tmp_path / "cd" / "comparison.md").read_text()
    assert "after targeted" in md and "after untargeted" in md
    # the shared answers carry a key (model fingerprint, prompts, decoding) so a rerun reuses them
    assert (tmp_path / "cd" / "shared" / "candidates.key").exists()
    assert (tmp_path / "cd" / "shared" / "eval_before.key").exists()


def test_missing_safety_rm_is_a_clear_error(tmp_path):
    from safealign.errors import SafealignError
    from safealign.train.context_distillation import run_context_distillation

    run = _run_dir(tmp_path)
    with pytest.raises(SafealignError, match="safety reward model not found"):
        run_context_distillation(ContextDistillationConfig(eval_sets={}), "unused", run, tmp_path / "out")
