"""PPO: GAE and the clipped losses against hand-worked numbers; learning, early stopping and exact resume on tiny models."""

from __future__ import annotations

import copy
import csv

import pytest
import torch

from safealign.errors import SafealignError
from safealign.models import load_model
from safealign.models.tiny import tiny_llama, tiny_tokenizer
from safealign.train.ppo import (
    PPOStageConfig,
    clipped_policy_loss,
    clipped_value_loss,
    gae_advantages,
    train_ppo,
)


@pytest.fixture(autouse=True)
def _one_thread():
    # Two threads on two shared cores oversubscribe: tiny-model steps run ~5x slower.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- math, hand-worked ----

def test_gae_hand_worked():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [2.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 0.5, 0.5], [1.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    adv, ret = gae_advantages(rewards, values, mask, gamma=0.9, lam=0.5)
    # row 0: δ = [0 + 0.45 − 0.5, 0 + 0.45 − 0.5, 1 − 0.5] = [−0.05, −0.05, 0.5]
    #        Â_2 = 0.5, Â_1 = −0.05 + 0.45·0.5 = 0.175, Â_0 = −0.05 + 0.45·0.175 = 0.02875
    # row 1: one token, the padded values (9) must not leak in: Â_0 = 2 − 1 = 1
    torch.testing.assert_close(adv, torch.tensor([[0.02875, 0.175, 0.5], [1.0, 0.0, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[0.52875, 0.675, 1.0], [2.0, 0.0, 0.0]]))
    adv1, _ = gae_advantages(rewards[:1], values[:1], mask[:1], gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv1, torch.tensor([[0.5, 0.5, 0.5]]))  # λ = γ = 1: Â_t = R − V(s_t)


def test_clipped_policy_loss_hand_worked():
    old = torch.zeros(1, 4)
    new = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]]))
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    mask = torch.ones(1, 4)
    # per token: −min(ρÂ, clip(ρ)Â) = [−1.2 (clipped), 1.5, −0.5, 0.8 (clipped)]
    loss, stats = clipped_policy_loss(new, old, adv, mask, cliprange=0.2)
    assert loss.item() == pytest.approx((-1.2 + 1.5 - 0.5 + 0.8) / 4)
    assert stats["clip_frac"].item() == pytest.approx(0.5)
    assert stats["approx_kl"].item() == pytest.approx(0.5 * (2 * 0.405465 ** 2 + 2 * 0.693147 ** 2) / 4, rel=1e-4)
    masked, _ = clipped_policy_loss(new, old, adv, torch.tensor([[1, 0, 0, 0]]), cliprange=0.2)
    assert masked.item() == pytest.approx(-1.2)
    # the gradient flows only through the unclipped tokens
    new.requires_grad_(True)
    clipped_policy_loss(new, old, adv, mask, 0.2)[0].backward()
    assert new.grad.tolist()[0] == pytest.approx([0.0, 1.5 / 4, -0.5 / 4, 0.0])


def test_clipped_value_loss_hand_worked():
    v, v_old, ret = torch.tensor([[2.0, 0.9]]), torch.tensor([[1.0, 1.0]]), torch.tensor([[1.5, 3.0]])
    loss, stats = clipped_value_loss(v, v_old, ret, torch.ones(1, 2), cliprange_value=0.2)
    # token 0: V_clip 1.2, max(0.25, 0.09) = 0.25; token 1: V_clip 0.9, 4.41 → ½·mean = ½·(0.25 + 4.41)/2
    assert loss.item() == pytest.approx(0.5 * (0.25 + 4.41) / 2)
    assert stats["value_clip_frac"].item() == 0.0
    # V moved past the return; its clipped twin (1.2) is farther from R = 3, so the clipped error binds
    loss, stats = clipped_value_loss(torch.tensor([[2.0]]), torch.tensor([[1.0]]), torch.tensor([[3.0]]),
                                     torch.ones(1, 1), 0.2)
    assert loss.item() == pytest.approx(0.5 * 1.8 ** 2) and stats["value_clip_frac"].item() == 1.0


def test_config_checks_batch_divisibility():
    with pytest.raises(SafealignError, match="multiple"):
        PPOStageConfig(batch_size=10, mini_batch_size=4)
    with pytest.raises(SafealignError, match="whitening"):
        PPOStageConfig(whitening="prompt")


# ---- training on tiny models ----

def vowel_reward(prompts, responses, is_safety):
    """Synthetic reward: the share of vowels in the response, i.e. for emitting vowel-bearing tokens."""
    return [sum(c in "aeiou" for c in r) / max(1, len(r)) for r in responses]


def _models(seed: int = 0):
    from transformers import LlamaForSequenceClassification

    tok = tiny_tokenizer()
    policy = tiny_llama(tok, seed=seed)
    vcfg = copy.deepcopy(policy.config)
    vcfg.num_labels = 1
    torch.manual_seed(seed + 1)
    return policy, tok, LlamaForSequenceClassification(vcfg)


PROMPTS = [(f"question {i}", i % 2 == 0) for i in range(24)]


def _cfg(**kw) -> PPOStageConfig:
    base = {"steps": 10, "batch_size": 16, "mini_batch_size": 8, "micro_batch_size": 8, "forward_batch_size": 16,
            "ppo_epochs": 4, "max_new_tokens": 8, "learning_rate": 1e-2, "value_learning_rate": 1e-2,
            "reward_shaping": "whiten", "kl_beta": 0.01, "lora": False, "max_kl": None, "device": "cpu",
            "save_every": 2}
    return PPOStageConfig(**{**base, **kw})


def _log(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_ppo_raises_a_synthetic_reward(tmp_path):
    policy, tok, value = _models()
    metrics = train_ppo(None, PROMPTS, vowel_reward, tmp_path / "out", _cfg(), policy=policy, tokenizer=tok,
                        value_model=value)
    rows = _log(tmp_path / "out" / "log.csv")
    rewards = [float(r["reward"]) for r in rows]
    # measured: 0.153 → 0.54 over 10 iterations (seed 0); the first iteration is the untrained policy
    assert len(rows) == 10 and metrics["steps"] == 10
    assert sum(rewards[-3:]) / 3 > rewards[0] + 0.15, rewards
    assert float(rows[0]["kl"]) == pytest.approx(0.0, abs=1e-5)  # π_θ = π_0 before the first update
    assert all(float(r["clip_frac"]) >= 0 and float(r["response_length"]) > 0 for r in rows)
    exported, _ = load_model(str(tmp_path / "out" / "model"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["log.csv", "metrics.json", "model"]
    assert exported.config.vocab_size == len(tok)


def test_class_whitening_ignores_a_per_class_reward_offset(tmp_path):
    """With `whitening: class`, adding a constant to every safety prompt's reward changes nothing."""
    def shifted(prompts, responses, is_safety):
        return [r + 10.0 * bool(s) for r, s in zip(vowel_reward(prompts, responses, is_safety), is_safety)]

    runs = {}
    for name, fn in (("plain", vowel_reward), ("shifted", shifted)):
        policy, tok, value = _models()
        train_ppo(None, PROMPTS, fn, tmp_path / name, _cfg(steps=2, whitening="class"), policy=policy,
                  tokenizer=tok, value_model=value)
        runs[name] = [float(r[k]) for r in _log(tmp_path / name / "log.csv")
                      for k in ("policy_loss", "value_loss", "kl")]
    assert runs["plain"] == pytest.approx(runs["shifted"], rel=1e-5, abs=1e-7)
    assert runs["plain"][-1] != 0.0  # the first update moved the policy (KL at step 2), identically in both runs


def test_lora_run_does_not_depend_on_earlier_random_draws(tmp_path):
    """In the pipeline PPO follows other stages in the same process: their draws must not change its run."""
    rows = []
    for name, draws in (("a", 0), ("b", 1000)):
        policy, tok, value = _models()
        torch.rand(draws)
        train_ppo(None, PROMPTS, vowel_reward, tmp_path / name, _cfg(steps=2, lora=True), policy=policy,
                  tokenizer=tok, value_model=value)
        rows.append([{k: v for k, v in r.items() if k != "seconds"} for r in _log(tmp_path / name / "log.csv")])
    assert rows[0] == rows[1]


class Killed(Exception):
    pass


def test_kill_and_resume_reproduces_the_uninterrupted_run(tmp_path):
    cfg = _cfg(steps=5, save_every=2, whitening="running")
    policy, tok, value = _models()
    full = train_ppo(None, PROMPTS, vowel_reward, tmp_path / "a", cfg, policy=policy, tokenizer=tok,
                     value_model=value, work_dir=tmp_path / "work_a")

    def kill_at_3(step, row):
        if step == 3:  # after step 3 is logged, before its work is checkpointed (last checkpoint: step 2)
            raise Killed

    policy, tok, value = _models()
    with pytest.raises(Killed):
        train_ppo(None, PROMPTS, vowel_reward, tmp_path / "b", cfg, policy=policy, tokenizer=tok,
                  value_model=value, work_dir=tmp_path / "work_b", on_step=kill_at_3)
    assert not (tmp_path / "b").exists() and (tmp_path / "work_b" / "checkpoint.pt").exists()
    policy, tok, value = _models()  # a fresh process would rebuild the starting models
    resumed = train_ppo(None, PROMPTS, vowel_reward, tmp_path / "b", cfg, policy=policy, tokenizer=tok,
                        value_model=value, work_dir=tmp_path / "work_b")

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    a, b = _log(tmp_path / "a" / "log.csv"), _log(tmp_path / "b" / "log.csv")
    assert [r["step"] for r in b] == ["1", "2", "3", "4", "5"]
    assert strip(a) == strip(b)
    assert (full["reward_last"], full["kl_last"]) == (resumed["reward_last"], resumed["kl_last"])
    wa, _ = load_model(str(tmp_path / "a" / "model"))
    wb, _ = load_model(str(tmp_path / "b" / "model"))
    for (n, pa), (_, pb) in zip(wa.state_dict().items(), wb.state_dict().items()):
        assert torch.equal(pa, pb), n

    # a checkpoint refuses to resume under a config that changes the trajectory
    policy, tok, value = _models()
    with pytest.raises(SafealignError, match="learning_rate"):
        train_ppo(None, PROMPTS, vowel_reward, tmp_path / "c", _cfg(steps=6, whitening="running",
                                                                     learning_rate=1e-3),
                  policy=policy, tokenizer=tok, value_model=value, work_dir=tmp_path / "work_b")


def test_lora_reference_heldout_early_stop_exports_best(tmp_path):
    """LoRA: π_0 is the adapter-disabled base; a flat held-out reward stops early and exports the start."""
    policy, tok, value = _models()
    value_dir = tmp_path / "value_rm"
    value.save_pretrained(value_dir)  # a reward-model checkpoint on disk initialises the value model
    start = {k: v.clone() for k, v in policy.state_dict().items()}
    cfg = _cfg(lora=True, lora_r=4, lora_alpha=8, learning_rate=5e-2, steps=6, eval_every=1, patience=2,
               reward_shaping="logit_whiten")
    metrics = train_ppo(None, PROMPTS, lambda p, r, s: [0.5] * len(r), tmp_path / "out", cfg, policy=policy,
                        tokenizer=tok, value_model_spec=value_dir, heldout=PROMPTS[:4])
    rows = _log(tmp_path / "out" / "log.csv")
    assert float(rows[0]["kl"]) == pytest.approx(0.0, abs=1e-6)
    assert metrics["steps"] == 2 and "did not improve" in metrics["stopped_early"]
    assert metrics["exported_step"] == 0 and [s for s, _ in metrics["heldout_history"]] == [0, 1, 2]
    exported, _ = load_model(str(tmp_path / "out" / "model"))
    assert not any("lora" in n for n in exported.state_dict())
    for k, v in exported.state_dict().items():
        assert torch.allclose(v, start[k]), k


def test_lora_layers_adapt_only_the_top_layers(tmp_path):
    policy, tok, value = _models()
    start = {k: v.clone() for k, v in policy.state_dict().items()}
    top = policy.config.num_hidden_layers - 1
    train_ppo(None, PROMPTS, vowel_reward, tmp_path / "out", _cfg(lora=True, lora_r=4, lora_alpha=8, lora_layers=1,
                                                                  learning_rate=5e-2, steps=2),
              policy=policy, tokenizer=tok, value_model=value)
    exported, _ = load_model(str(tmp_path / "out" / "model"))
    changed = {k for k, v in exported.state_dict().items() if not torch.equal(v, start[k])}
    assert changed and all(k.startswith(f"model.layers.{top}.") for k in changed)


def test_max_kl_stops_the_run(tmp_path):
    policy, tok, value = _models()
    metrics = train_ppo(None, PROMPTS, vowel_reward, tmp_path / "out", _cfg(steps=6, max_kl=0.05),
                        policy=policy, tokenizer=tok, value_model=value)
    assert metrics["steps"] < 6 and metrics["stopped_early"].startswith("kl ")


def test_tensorboard_when_asked(tmp_path):
    pytest.importorskip("tensorboard")
    policy, tok, value = _models()
    train_ppo(None, PROMPTS[:4], vowel_reward, tmp_path / "out", _cfg(steps=1, batch_size=4, mini_batch_size=4,
                                                                     micro_batch_size=4, report_to=["tensorboard"]),
              policy=policy, tokenizer=tok, value_model=value, work_dir=tmp_path / "work")
    assert any((tmp_path / "work" / "tensorboard").iterdir())
