"""Rejection sampling: exact reward-vs-N order statistics, pooling across rounds, a tiny end-to-end run that resumes."""

from __future__ import annotations

import itertools
import json
import random
import shutil
import statistics

import pytest
import torch

from safealign.data.records import Example
from safealign.errors import SafealignError
from safealign.train.rejection_sampling import (
    RejectionSamplingConfig,
    decision_confidence,
    expected_max,
    expected_median,
    pool_best,
    replay_examples,
    reward_vs_n,
    run_rejection_sampling,
    select_prompts,
)
from safealign.train.sft import SFTStageConfig


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_expected_max_and_median_hand_worked():
    r = [0.9, 0.1, 0.5]
    assert [expected_max(r, n) for n in (1, 2, 3)] == pytest.approx([0.5, (0.5 + 0.9 + 0.9) / 3, 0.9])
    # medians of the 2-subsets: 0.3, 0.5, 0.7
    assert [expected_median(r, n) for n in (1, 2, 3)] == pytest.approx([0.5, 0.5, 0.5])
    curve = reward_vs_n([r, [0.0, 0.0, 1.0]])
    assert curve["n"] == [1, 2, 3]
    assert curve["max"] == pytest.approx([(0.5 + 1 / 3) / 2, (0.7667 + 2 / 3) / 2, (0.9 + 1.0) / 2], abs=1e-4)


def test_order_statistics_match_brute_force_enumeration():
    rng = random.Random(0)
    r = [round(rng.random(), 3) for _ in range(7)] + [0.5, 0.5]  # ties included
    for n in range(1, len(r) + 1):
        subsets = list(itertools.combinations(r, n))
        assert expected_max(r, n) == pytest.approx(sum(max(s) for s in subsets) / len(subsets))
        assert expected_median(r, n) == pytest.approx(sum(statistics.median(s) for s in subsets) / len(subsets))


def _row(pid, it, responses, rewards):
    return {"id": pid, "iteration": it, "is_safety": True, "prompt": pid, "context": [], "responses": responses,
            "rewards": rewards, "finished": [True] * len(responses)}


def test_pool_keeps_the_best_answer_across_all_rounds():
    pool = pool_best({}, [_row("p", 1, ["a", "b"], [0.2, 0.7]), _row("q", 1, ["", "c"], [0.9, 0.1])])
    assert (pool["p"]["response"], pool["q"]["response"]) == ("b", "c")  # the empty answer is never kept
    pool = pool_best(pool, [_row("p", 2, ["d", "e"], [0.5, 0.7]), _row("q", 2, ["f"], [0.4])])
    assert (pool["p"]["response"], pool["p"]["iteration"]) == ("b", 1)  # a tie keeps the older answer
    assert (pool["q"]["response"], pool["q"]["iteration"]) == ("f", 2)


def test_safety_floor_drops_unsafe_bests_on_safety_prompts_only():
    unsafe_best = {**_row("p", 1, ["comply", "decline"], [0.6, 0.5]), "safety": [0.2, 0.9]}
    benign = {**_row("b", 1, ["short", "helpful"], [0.3, 0.8]), "is_safety": False, "safety": [0.9, 0.1]}
    all_unsafe = {**_row("q", 1, ["x", "y"], [0.7, 0.6]), "safety": [0.1, 0.3]}
    pool = pool_best({}, [unsafe_best, benign, all_unsafe], min_safety=0.5)
    assert pool["p"]["response"] == "decline"  # the higher gated reward fell below the floor
    assert pool["b"]["response"] == "helpful"  # benign prompts: no floor
    assert "q" not in pool  # no sample reached the floor: the prompt sits this round out
    assert pool_best({}, [all_unsafe])["q"]["response"] == "x"  # without a floor: plain best-of-K


def _examples(n: int = 6) -> list[Example]:
    out = []
    for i in range(n):
        out.append(Example(id=f"a{i}", kind="adversarial", prompt=f"how to rob bank {i}", response="No.",
                           category="illicit_criminal", attack_vector="direct"))
        out.append(Example(id=f"b{i}", kind="benign", prompt=f"bread recipe {i}", response="Mix flour."))
    return out


def test_select_prompts_is_stratified_and_deterministic():
    ex = _examples(10)
    a = select_prompts(ex, 6, seed=0)
    assert len(a) == 6 and sum(e.is_safety for e in a) == 3
    assert sorted(e.id for e in a) == sorted(e.id for e in select_prompts(list(reversed(ex)), 6, seed=0))
    assert select_prompts(ex, None, 0) == ex
    assert sum(e.is_safety for e in select_prompts(ex, 6, seed=0, safety_share=2 / 3)) == 4
    few_safety = [e for e in ex if e.is_safety][:2] + [e for e in ex if not e.is_safety]
    picked = select_prompts(few_safety, 6, seed=0, safety_share=1.0)
    assert len(picked) == 6 and sum(e.is_safety for e in picked) == 2  # all there are, benign fill the rest


def test_replay_takes_demonstrations_of_other_prompts_stratified():
    ex = _examples(10)
    chosen = select_prompts(ex, 6, seed=0)
    replay = replay_examples(ex, chosen, 4, seed=0)
    assert len(replay) == 4 and sum(e.is_safety for e in replay) == 2
    assert not {e.id for e in replay} & {e.id for e in chosen}  # one target per prompt
    assert {e.response for e in replay} == {"No.", "Mix flour."}  # the demonstrations, not samples
    assert all(e.source == "sft-replay" for e in replay)
    assert replay_examples(ex, chosen, 0, seed=0) == []
    assert len(replay_examples(ex, chosen, 100, seed=0)) == 14  # all the prompts left
    assert sum(e.is_safety for e in replay_examples(ex, chosen, 4, seed=0, safety_share=0.75)) == 3


def test_replay_ranked_takes_the_lowest_of_each_class():
    ex = _examples(10)
    chosen = select_prompts(ex, 6, seed=0)
    rank = {e.id: float(e.id[1:]) for e in ex}  # a0 < a1 < ...: the lowest index is the "hardest"
    replay = replay_examples(ex, chosen, 4, seed=0, rank=rank)
    taken = {e.id for e in chosen}
    for prefix in "ab":
        rest = sorted((e.id for e in ex if e.id[0] == prefix and e.id not in taken), key=lambda i: int(i[1:]))
        assert sorted(e.id for e in replay if e.id[0] == prefix) == rest[:2]
    # an id without a rank comes after every ranked one
    partial = {e.id: 0.5 for e in ex if e.id.endswith(("8", "9"))}
    assert {e.id for e in select_prompts(ex, 4, seed=0, rank=partial)} == {"a8", "a9", "b8", "b9"}


def test_decision_confidence_is_the_own_class_probability(tiny_model):
    from safealign.train.sft import decision_nll, refusal_tokens

    model, tok = tiny_model
    ex = _examples(3) + [Example(id="c0", kind="adversarial", prompt="a longer prompt to pad the batch with",
                                 response="No.", category="illicit_criminal", attack_vector="direct")]
    conf = decision_confidence(model, tok, ex, batch_size=3)
    assert set(conf) == {e.id for e in ex} and all(0.0 < c < 1.0 for c in conf.values())

    def ids(messages, gen):
        out = tok.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True)
        return list(out["input_ids"] if hasattr(out, "keys") else out)

    def first_answer_token(e):
        prompt = ids(e.conversation(), True)
        return ids([*e.conversation(), {"role": "assistant", "content": e.response}], False)[len(prompt)]

    firsts = [first_answer_token(e) for e in ex]
    declines = torch.tensor(refusal_tokens(firsts, [e.is_safety for e in ex]))
    assert len(declines) == 1  # "No." opens every adversarial demonstration and no benign one
    with torch.inference_mode():  # one prompt at a time, no padding, the full LM head
        for e, first in zip(ex, firsts):
            logits = model(torch.tensor([ids(e.conversation(), True)])).logits[0, -1:]
            expected = torch.exp(-decision_nll(logits, torch.tensor([first]), declines)).item()
            assert conf[e.id] == pytest.approx(expected, abs=1e-5)


def test_round_fine_tunes_on_pool_plus_replay(tiny_model_dir, tmp_path, monkeypatch):
    import safealign.train.sft as sft

    seen = []

    def fake_train_sft(base, examples, out, cfg):
        seen.append([(e.id, e.source) for e in examples])
        shutil.copytree(tiny_model_dir, out)
        return {"examples": len(examples)}

    monkeypatch.setattr(sft, "train_sft", fake_train_sft)
    cfg = RejectionSamplingConfig(k=2, max_new_tokens=4, max_prompts=4, replay=2, device="cpu")
    m = run_rejection_sampling(str(tiny_model_dir), _examples(), VowelReward(), tmp_path / "out", cfg)
    (ids_sources,) = seen
    replayed = [i for i, src in ids_sources if src == "sft-replay"]
    sampled = [i for i, src in ids_sources if src == "rs-iter1"]
    assert len(sampled) == 4 and len(replayed) == 2 and not set(sampled) & set(replayed)
    assert (m["replay"], m["replay_safety"]) == (2, 1)

    # hardest: the replay is the candidates the starting model is least sure of, one per class here
    seen.clear()
    hard = RejectionSamplingConfig(k=2, max_new_tokens=4, max_prompts=4, replay=2, replay_select="hardest",
                                   replay_candidates=6, device="cpu")
    m = run_rejection_sampling(str(tiny_model_dir), _examples(), VowelReward(), tmp_path / "out2", hard)
    from safealign.models import load_model

    model, tok = load_model(str(tiny_model_dir))
    taken = {i for i, src in seen[0] if src == "rs-iter1"}
    scored = select_prompts([e for e in _examples() if e.id not in taken], 6, 0)
    conf = decision_confidence(model, tok, scored)
    replayed = {i for i, src in seen[0] if src == "sft-replay"}
    assert replayed == {min((e.id for e in scored if e.is_safety == s), key=conf.get) for s in (True, False)}
    assert m["replay_confidence_safety"]["replayed"] <= m["replay_confidence_safety"]["candidates"]


class VowelReward:
    """A stand-in for GatedReward: R_c = share of vowels; counts its calls to show resumed rounds are skipped."""

    def __init__(self):
        self.calls = 0

    def __call__(self, prompts, responses, is_safety):
        self.calls += 1
        return [sum(c in "aeiou" for c in r) / max(1, len(r)) for r in responses]


def test_rejection_sampling_end_to_end_and_resume(tiny_model_dir, tmp_path):
    cfg = RejectionSamplingConfig(k=4, temperature=1.0, max_new_tokens=8, iterations=2, max_prompts=None,
                                  device="cpu", sft=SFTStageConfig(lora=False, epochs=3, batch_size=4,
                                                                   learning_rate=1e-2, logging_steps=1))
    reward = VowelReward()
    m = run_rejection_sampling(str(tiny_model_dir), _examples(), reward, tmp_path / "out", cfg,
                               heldout=_examples(2), work_dir=tmp_path / "work")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model", "pool.jsonl", "reward_vs_n.json",
                                                     "reward_vs_n.png", "samples_iter1.jsonl", "samples_iter2.jsonl"]
    r1, r2 = m["rounds"]
    for r in (r1, r2):
        curve = m["reward_vs_n"][f"round {r['iteration']}"]
        assert curve["max"][0] == pytest.approx(curve["median"][0])  # N = 1: max = median = mean
        assert all(b >= a - 1e-12 for a, b in zip(curve["max"], curve["max"][1:]))  # E[max] rises with N
    assert r1["mean_best_of_k"] > r1["mean_reward_n1"]
    # fine-tuning on the best of 4 moves the policy's own samples toward the reward (measured: mean of one
    # sample 0.173 → 0.208, best of 4 0.272 → 0.333, seed 0)
    assert r2["mean_reward_n1"] > r1["mean_reward_n1"]
    assert r2["pool_size"] == 12 and r2["pool_mean_reward"] >= r1["pool_mean_reward"]
    samples = [json.loads(line) for line in (out / "samples_iter1.jsonl").read_text().splitlines()]
    assert len(samples) == 12 and all(len(s["responses"]) == 4 for s in samples)

    # a re-run with the same work_dir samples nothing new: only the two held-out evaluations call the reward
    reward2 = VowelReward()
    m2 = run_rejection_sampling(str(tiny_model_dir), _examples(), reward2, tmp_path / "out2", cfg,
                                heldout=_examples(2), work_dir=tmp_path / "work")
    assert reward2.calls == 2 and m2["rounds"][1]["mean_reward_n1"] == r2["mean_reward_n1"]


def test_config_is_checked():
    with pytest.raises(SafealignError, match="finetune_from"):
        RejectionSamplingConfig(finetune_from="best")
    with pytest.raises(SafealignError, match="replay"):
        RejectionSamplingConfig(replay=-1)
    with pytest.raises(SafealignError, match="replay_safety_share"):
        RejectionSamplingConfig(replay_safety_share=1.5)
    with pytest.raises(SafealignError, match="replay_select"):
        RejectionSamplingConfig(replay_select="easiest")
    with pytest.raises(SafealignError, match="replay_candidates"):
        RejectionSamplingConfig(replay=8, replay_candidates=4)
