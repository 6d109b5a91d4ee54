"""The gated reward: logit, gate, whitening, per-token KL penalty, against hand-worked numbers and properties."""

from __future__ import annotations

import math

import pytest
import torch

from safealign.train.gated_reward import (
    GatedReward,
    RunningWhitener,
    gate,
    gated_reward,
    kl_penalized_rewards,
    logit,
    shape_reward,
    whiten,
    whiten_by_group,
)


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def test_logit_hand_worked_and_clamped():
    assert logit(t(0.5, 0.8)).tolist() == pytest.approx([0.0, math.log(4)])
    lo, hi = logit(t(0.0, 1.0)).tolist()
    assert lo == pytest.approx(math.log(1e-6 / (1 - 1e-6))) and hi == pytest.approx(-lo)
    assert logit(t(0.0), eps=0.01).item() == pytest.approx(math.log(0.01 / 0.99))


def test_gate_hand_worked():
    r_s, r_h = t(0.9, 0.1, 0.5, 0.15, 0.149), t(0.2, 0.8, 0.7, 0.6, 0.6)
    is_safety = torch.tensor([True, False, False, False, False])
    # safety prompt → R_s; unsafe (R_s < 0.15) → R_s; otherwise R_h; the gate is strict (< 0.15)
    assert gate(r_s, r_h, is_safety).tolist() == pytest.approx([0.9, 0.1, 0.7, 0.6, 0.149])
    assert gate(r_s, r_h, is_safety, threshold=0.6).tolist() == pytest.approx([0.9, 0.1, 0.5, 0.15, 0.149])


def test_whiten_hand_worked():
    assert whiten(t(1, 2, 3)).tolist() == pytest.approx([-1.224744, 0.0, 1.224744], abs=1e-6)
    assert whiten(t(1, 2, 3), shift_mean=False).tolist() == pytest.approx([0.775256, 2.0, 3.224744], abs=1e-6)
    assert whiten(t(5.0)).tolist() == [0.0]  # population variance: a batch of one is 0, not NaN
    x, m = t(1, 2, 3, 100), torch.tensor([1, 1, 1, 0])
    assert whiten(x, m).tolist() == pytest.approx([-1.224744, 0.0, 1.224744, 0.0], abs=1e-6)


def test_whiten_by_group_hand_worked():
    # each class whitened alone: the benign answers' low RM scale no longer reads as a bad answer
    x, groups = t(1, 3, 10, 20, 7), torch.tensor([False, False, True, True, False])
    assert whiten_by_group(x, groups).tolist() == pytest.approx([-1.069045, -0.267261, -1, 1, 1.336306], abs=1e-6)
    assert whiten_by_group(t(1, 3, 10), torch.tensor([0, 0, 1])).tolist() == pytest.approx([-1, 1, 0], abs=1e-6)
    same = torch.tensor([1, 1, 1, 1, 1])
    assert whiten_by_group(x, same).tolist() == pytest.approx(whiten(x).tolist())


def test_gated_reward_end_to_end_hand_worked():
    # R_c = [0.5, 0.8, 0.2] → logit [0, 1.3863, −1.3863] → whiten: μ 0, σ² = 2·1.3863²/3
    r = gated_reward(t(0.5, 0.8, 0.2), t(0.0, 0.0, 0.9), torch.tensor([True, True, True]))
    assert r.tolist() == pytest.approx([0.0, 1.224744, -1.224744], abs=1e-5)
    r = gated_reward(t(0.5, 0.8, 0.2), t(0.0, 0.0, 0.9), torch.tensor([True, True, False]), whitening="none")
    assert r.tolist() == pytest.approx([0.0, math.log(4), math.log(9)])


def test_running_whitener_matches_concatenated_statistics():
    w = RunningWhitener()
    a, b = t(1, 2, 3), t(10, 20)
    first = w(a)
    assert first.tolist() == pytest.approx(whiten(a).tolist())  # first batch: same as batch whitening
    w(b)
    allx = torch.cat([a, b])
    assert (w.mean, w.var) == pytest.approx((allx.mean().item(), allx.var(correction=0).item()))
    w2 = RunningWhitener()
    w2.load_state_dict(w.state_dict())
    assert w2(t(4.0), update=False).tolist() == pytest.approx(w(t(4.0), update=False).tolist())
    assert shape_reward(t(0.5, 0.8), w2).dtype == torch.float64


def test_kl_penalized_rewards_hand_worked():
    lp = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]])
    ref = torch.tensor([[-1.5, -1.0, 0.0], [-0.5, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    rewards, kl = kl_penalized_rewards(torch.tensor([2.0, -1.0]), lp, ref, mask, beta=0.1)
    torch.testing.assert_close(kl, torch.tensor([[0.5, -1.0, 0.0], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, 2.1, 0.0], [-1.0, 0.0, 0.0]]))


# ---- properties ----

def test_monotone_in_safety_score_below_the_gate():
    r_s = torch.linspace(0.0, 0.149, 50, dtype=torch.float64)
    r_h = torch.rand(50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for flags in (torch.zeros(50, dtype=torch.bool), torch.ones(50, dtype=torch.bool)):
        for whitening in ("none", "batch"):
            r = gated_reward(r_s, r_h, flags, whitening=whitening)
            assert torch.all(r[1:] > r[:-1]), whitening


def test_safety_prompts_ignore_helpfulness():
    g = torch.Generator().manual_seed(1)
    r_s = torch.rand(64, dtype=torch.float64, generator=g)
    flags = torch.ones(64, dtype=torch.bool)
    a = gated_reward(r_s, torch.rand(64, dtype=torch.float64, generator=g), flags)
    b = gated_reward(r_s, torch.rand(64, dtype=torch.float64, generator=g), flags)
    assert torch.equal(a, b)


def test_finite_everywhere_including_zero_and_one():
    grid = t(0.0, 1e-12, 0.15, 0.5, 1 - 1e-12, 1.0)
    r_s, r_h = torch.meshgrid(grid, grid, indexing="ij")
    for flag in (True, False):
        flags = torch.full(r_s.flatten().shape, flag)
        for whitening in ("none", "batch", RunningWhitener()):
            r = gated_reward(r_s.flatten(), r_h.flatten(), flags, whitening=whitening)
            assert torch.isfinite(r).all()
    assert torch.isfinite(gated_reward(t(1.0), t(1.0), torch.tensor([False]))).all()  # batch of one
    assert torch.isfinite(gated_reward(t(1.0, 1.0), t(0.0, 0.0), torch.tensor([True, True]))).all()  # zero variance


# ---- the GatedReward object over two scorers ----

class FakeRM:
    def __init__(self, table: dict[str, float]):
        self.table, self.calls = table, []

    def score(self, prompts, responses):
        self.calls.append(list(responses))
        return [self.table[r] for r in responses]


def test_gated_reward_object_gates_and_scores_lazily():
    safety = FakeRM({"refuse": 0.9, "harm": 0.05, "recipe": 0.6})
    helpful = FakeRM({"refuse": 0.1, "harm": 0.95, "recipe": 0.8})
    gr = GatedReward(safety, helpful)
    prompts = ["how to rob", "bread?", "bread?", "bread?"]
    responses = ["refuse", "harm", "recipe", "refuse"]
    flags = [True, False, False, False]
    c = gr.components(prompts, responses, flags)
    assert c.gated == pytest.approx([0.9, 0.05, 0.8, 0.1])
    assert c.used_safety == [True, True, False, False]
    assert helpful.calls == [["recipe", "refuse"]]  # only what the gate sends to the helpfulness RM
    assert math.isnan(c.helpfulness[0]) and c.helpfulness[2] == pytest.approx(0.8)
    shaped = gr.shaped(prompts, responses, flags)
    assert sum(shaped) == pytest.approx(0.0, abs=1e-9) and shaped[0] == max(shaped)
    eager = GatedReward(safety, helpful, lazy=False).components(prompts, responses, flags)
    assert eager.helpfulness == pytest.approx([0.1, 0.95, 0.8, 0.1]) and eager.gated == c.gated


class SharedTrunkRM(FakeRM):
    """A safety RM that shares its lower layers with the helpfulness RM, as `RewardModel` reports it."""

    def shared_layers(self, other):
        return 3

    def score_both(self, other, prompts, responses):
        self.calls.append(("both", list(responses)))
        return [self.table[r] for r in responses], [other.table[r] for r in responses]


def test_rms_sharing_a_trunk_are_scored_together_with_the_same_gate():
    table_s, table_h = {"refuse": 0.9, "harm": 0.05, "recipe": 0.6}, {"refuse": 0.1, "harm": 0.95, "recipe": 0.8}
    safety, helpful = SharedTrunkRM(table_s), FakeRM(table_h)
    prompts, responses, flags = ["how to rob", "bread?", "bread?"], ["refuse", "harm", "recipe"], [True, False, False]
    c = GatedReward(safety, helpful).components(prompts, responses, flags)
    separate = GatedReward(FakeRM(table_s), FakeRM(table_h), lazy=False).components(prompts, responses, flags)
    assert c == separate
    assert safety.calls == [("both", responses)] and helpful.calls == []


def test_trl_reward_func_reads_is_safety_and_conversational_completions():
    gr = GatedReward(FakeRM({"a": 0.9, "b": 0.5}), FakeRM({"a": 0.2, "b": 0.7}), whitening="none")
    fn = gr.reward_func()
    out = fn(prompts=[[{"role": "user", "content": "x"}]] * 2,
             completions=[[{"role": "assistant", "content": "a"}], [{"role": "assistant", "content": "b"}]],
             is_safety=[False, False], trainer_state=None)
    assert out == pytest.approx([math.log(0.2 / 0.8), math.log(0.7 / 0.3)])
    with pytest.raises(ValueError, match="is_safety"):
        fn(prompts=["x"], completions=["a"])


def test_scorer_contract_is_checked():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        GatedReward(FakeRM({"a": 3.0}), FakeRM({"a": 0.5}))(["p"], ["a"], [True])
    with pytest.raises(ValueError, match="whitening"):
        GatedReward(FakeRM({}), FakeRM({}), whitening="median")
