"""Reward models: the margin ranking loss by hand, the pair filter, pair validation, training on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import write_jsonl
from safealign.data.preferences import (
    MARGINS, PreferencePair, keep_pair, load_hh_rlhf, load_pairs, margin, parse_hh_dialogue,
)
from safealign.errors import DataError
from safealign.train.reward_model import RewardModel, RewardModelConfig, ranking_loss, safety_aux_loss, \
    train_reward_model


def test_margins_follow_llama2_table_27():
    assert MARGINS["small"] == (1.0, 2 / 3, 1 / 3, 0.0) and MARGINS["large"] == (3.0, 2.0, 1.0, 0.0)
    assert margin("significantly_better", "large") == 3.0 and margin("negligibly_better", "small") == 0.0
    assert margin("better", "none") == 0.0


def test_ranking_loss_by_hand():
    # r_c − r_r − m = 2 − 0 − 1 = 1 → −log σ(1) = log(1 + e^−1) = 0.31326
    assert ranking_loss(torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([1.0])).item() == pytest.approx(
        0.313262, abs=1e-6)
    # no margin, two pairs: mean(−log σ(0), −log σ(−1)) = (0.693147 + 1.313262) / 2
    got = ranking_loss(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])).item()
    assert got == pytest.approx((math.log(2) + math.log(1 + math.e)) / 2, abs=1e-6)
    # a larger margin demands a larger gap: the same scores lose more
    assert ranking_loss(torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([3.0])) > \
        ranking_loss(torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([1.0]))


def test_safety_aux_loss_ignores_unknown_labels():
    rewards = torch.tensor([0.0, 2.0, 0.0, -2.0])  # chosen half [0, 2], rejected half [0, -2]
    labels = torch.tensor([[1.0, -1.0], [1.0, 0.0]])  # pair 0: chosen safe, rejected unknown
    # known: chosen0 (r=0, y=1), chosen1 (r=2, y=1), rejected1 (r=−2, y=0)
    expect = (math.log(2) + math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-2))) / 3
    assert safety_aux_loss(rewards, labels).item() == pytest.approx(expect, abs=1e-6)


def _pair(i, chosen_safe=True, rejected_safe=False, rating="significantly_better"):
    return PreferencePair(id=f"p{i}", prompt=[{"role": "user", "content": f"how to rob bank {i}"}],
                          chosen="I can't help with that.", rejected=f"Sure: step {i} is to",
                          rating=rating, is_safety=True, chosen_safe=chosen_safe, rejected_safe=rejected_safe)


def test_pair_filter_drops_unsafe_chosen_over_safe_rejected():
    assert keep_pair(_pair(0, True, False))
    assert keep_pair(_pair(0, True, True)) and keep_pair(_pair(0, False, False))
    assert not keep_pair(_pair(0, False, True))
    assert keep_pair(_pair(0, None, True))


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.update(rating="amazing"), "bad rating 'amazing'"),
    (lambda r: r.pop("rejected"), "missing field 'rejected'"),
    (lambda r: r.update(chosen="  "), "empty chosen response"),
    (lambda r: r.update(prompt=[]), "prompt must be"),
])
def test_bad_pairs_fail_clearly(tmp_path, mutate, message):
    rows = [_pair(i).as_dict() for i in range(3)]
    mutate(rows[1])
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_pairs(path)
    assert f"pairs.jsonl:line 2 (id=p1): {message}" in str(err.value)


def test_hh_dialogue_parsing():
    turns = parse_hh_dialogue("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how?\n\nAssistant: like this")
    assert turns == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                     {"role": "user", "content": "how?"}, {"role": "assistant", "content": "like this"}]


def test_hh_loader(tmp_path):
    path = write_jsonl(tmp_path / "test.jsonl", [
        {"chosen": "\n\nHuman: q1\n\nAssistant: good", "rejected": "\n\nHuman: q1\n\nAssistant: bad"}])
    (p,) = load_hh_rlhf(path, is_safety=True)
    assert p.prompt == [{"role": "user", "content": "q1"}] and (p.chosen, p.rejected) == ("good", "bad")
    assert p.is_safety and p.rating == "better"


def test_reward_model_learns_refusal_preference(tiny_model_dir, tmp_path):
    pairs = [_pair(i) for i in range(24)]
    cfg = RewardModelConfig(trainable_layers=-1, learning_rate=5e-3, epochs=4, batch_size=8, device="cpu",
                            safety_aux_weight=0.5, max_pairs=None)
    metrics = train_reward_model(str(tiny_model_dir), pairs, tmp_path / "rm", cfg)
    assert metrics["pairs"] == 24 and metrics["steps"] == 12
    rm = RewardModel(tmp_path / "rm", device="cpu")
    prompts = [p.prompt for p in pairs[:6]]
    chosen = rm.score(prompts, [p.chosen for p in pairs[:6]])
    rejected = rm.score(prompts, [p.rejected for p in pairs[:6]])
    assert all(0.0 <= s <= 1.0 for s in chosen + rejected)
    assert sum(c > r for c, r in zip(chosen, rejected)) == 6


@pytest.mark.parametrize("trainable_layers", [1, -1])
def test_score_both_shares_the_frozen_trunk_and_matches_separate_scoring(tiny_model_dir, tmp_path, trainable_layers):
    """Two RMs trained from one checkpoint with the top layer trainable share every lower layer: scoring with
    both runs the trunk once and gives each model's own scores; RMs trained in full share nothing."""
    cfg = RewardModelConfig(trainable_layers=trainable_layers, learning_rate=5e-3, epochs=1, batch_size=8,
                            device="cpu", max_pairs=None)
    train_reward_model(str(tiny_model_dir), [_pair(i) for i in range(8)], tmp_path / "a", cfg)
    flipped = [PreferencePair(id=p.id, prompt=p.prompt, chosen=p.rejected, rejected=p.chosen, rating=p.rating,
                              is_safety=False) for p in (_pair(i) for i in range(8, 16))]
    train_reward_model(str(tiny_model_dir), flipped, tmp_path / "b", cfg)
    a, b = RewardModel(tmp_path / "a", device="cpu", batch_size=3), RewardModel(tmp_path / "b", device="cpu")
    n_layers = a.model.config.num_hidden_layers
    assert a.shared_layers(b) == (n_layers - 1 if trainable_layers == 1 else 0)
    prompts = [[{"role": "user", "content": f"question {i} " + "long " * i}] for i in range(7)]
    responses = ["I can't help with that.", "Sure: step one", "x", "Here is a longer answer " * 5, "No.", "ok", ""]
    sa, sb = a.score_both(b, prompts, responses)
    assert sa == pytest.approx(a.score(prompts, responses), abs=1e-6)
    assert sb == pytest.approx(b.score(prompts, responses), abs=1e-6)
    assert sa != pytest.approx(sb, abs=1e-3)  # two different models, not one read twice
