"""RLOO through TRL with the gated reward: offline, tiny models, is_safety reaching the gate, resume."""

from __future__ import annotations

import csv

import pytest
import torch

from safealign.errors import SafealignError
from safealign.models import load_model
from safealign.models.tiny import tiny_llama, tiny_tokenizer
from safealign.train.gated_reward import GatedReward
from safealign.train.rloo import RLOOStageConfig, rloo_dataset, train_rloo


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class VowelRM:
    """A fake reward model: σ-score from the share of vowels; remembers the prompts it was asked about."""

    def __init__(self):
        self.prompts = []

    def score(self, prompts, responses):
        self.prompts += [p[-1]["content"] for p in prompts]
        return [min(1.0, 0.1 + sum(c in "aeiou" for c in r) / max(1, len(r))) for r in responses]


PROMPTS = [(f"{'unsafe' if i % 2 == 0 else 'benign'} question {i}", i % 2 == 0) for i in range(8)]


def _cfg(**kw) -> RLOOStageConfig:
    base = {"steps": 3, "num_generations": 4, "batch_size": 8, "max_new_tokens": 8, "learning_rate": 1e-2,
            "lora_r": 4, "lora_alpha": 8, "device": "cpu"}
    return RLOOStageConfig(**{**base, **kw})


def test_dataset_carries_is_safety():
    ds = rloo_dataset(PROMPTS[:2])
    assert ds.column_names == ["prompt", "is_safety"]
    assert ds[0] == {"prompt": [{"role": "user", "content": "unsafe question 0"}], "is_safety": True}


def test_rloo_runs_offline_with_the_gated_reward(tmp_path):
    tok = tiny_tokenizer()
    safety_rm, helpfulness_rm = VowelRM(), VowelRM()
    metrics = train_rloo(None, PROMPTS, GatedReward(safety_rm, helpfulness_rm), tmp_path / "out", _cfg(),
                         model=tiny_llama(tok), tokenizer=tok)
    assert metrics["steps"] == 3
    # the gate saw is_safety: the helpfulness RM never scores a safety prompt
    assert len(safety_rm.prompts) == 3 * 8
    assert helpfulness_rm.prompts and all(p.startswith("benign") for p in helpfulness_rm.prompts)
    with open(tmp_path / "out" / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(0.0 <= float(r["gated/r_c"]) <= 1.0 for r in rows)
    assert abs(float(rows[0]["reward"])) < 1e-5  # the shaped reward is batch-whitened
    exported, _ = load_model(str(tmp_path / "out" / "model"))
    assert not any("lora" in n for n in exported.state_dict())


def test_full_fine_tuning_resumes_from_trainer_checkpoints(tiny_model_dir, tmp_path):
    gated = GatedReward(VowelRM(), VowelRM())
    first = train_rloo(str(tiny_model_dir), PROMPTS, gated, tmp_path / "a", _cfg(steps=2, lora=False,
                                                                                     save_every=1),
                       work_dir=tmp_path / "work")
    assert first["steps"] == 2 and first["resumed_from"] is None
    again = train_rloo(str(tiny_model_dir), PROMPTS, gated, tmp_path / "b", _cfg(steps=3, lora=False,
                                                                                     save_every=1),
                       work_dir=tmp_path / "work")
    assert again["steps"] == 3 and again["resumed_from"].endswith("checkpoint-2")


def test_config_and_model_checks(tmp_path):
    with pytest.raises(SafealignError, match="num_generations"):
        RLOOStageConfig(num_generations=1)
    with pytest.raises(SafealignError, match="multiple"):
        RLOOStageConfig(batch_size=6, num_generations=4)
    tok = tiny_tokenizer()
    with pytest.raises(SafealignError, match="reference"):
        train_rloo(None, PROMPTS, GatedReward(VowelRM(), VowelRM()), tmp_path / "out", _cfg(lora=False),
                   model=tiny_llama(tok), tokenizer=tok)
