"""I/O, statistics, config and policy: the small shared pieces every stage stands on."""

from __future__ import annotations

import math

import pytest

from safealign.config import load_config
from safealign.errors import DataError, SafealignError
from safealign.io import atomic_path, read_jsonl, write_jsonl
from safealign.policy import load_policy
from safealign.stats import wilson


def test_wilson_matches_hand_computed_interval():
    # k=5, n=10, z=1.96: centre 0.5, half = 1.96*sqrt(0.025 + 0.0096)/1.3842 = 0.2634
    r = wilson(5, 10)
    assert r.value == 0.5
    assert r.low == pytest.approx(0.2366, abs=1e-4)
    assert r.high == pytest.approx(0.7634, abs=1e-4)
    zero = wilson(0, 20)
    assert zero.low == 0.0 and zero.high == pytest.approx(0.1611, abs=1e-4)
    assert math.isnan(wilson(0, 0).value)


def test_read_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2,\n')
    with pytest.raises(DataError, match=r"x\.jsonl:line 3: invalid JSON"):
        list(read_jsonl(path))
    path.write_text('[1, 2]\n')
    with pytest.raises(DataError, match="expected a JSON object"):
        list(read_jsonl(path))


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "stage"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "half.txt").write_text("partial")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    write_jsonl(tmp_path / "ok.jsonl", [{"a": 1}])
    assert [o for _, o in read_jsonl(tmp_path / "ok.jsonl")] == [{"a": 1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.jsonl"]


def test_config_overrides_and_unknown_keys(tmp_path):
    cfg = load_config(None, ["sft.epochs=2", "stages.sft=false", "eval.sets={advbench: 5}"])
    assert cfg.sft.epochs == 2.0 and cfg.stages["sft"] is False and cfg.stages["base_eval"] is True
    assert cfg.eval.sets == {"advbench": 5}
    with pytest.raises(SafealignError, match="unknown key"):
        load_config(None, ["sft.epoch=2"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft: [unclosed\n")
    with pytest.raises(SafealignError, match="bad.yaml: invalid YAML"):
        load_config(bad)


def test_policy_has_the_recipe_categories_and_vectors(tmp_path):
    p = load_policy()
    assert p.categories == ["illicit_criminal", "hateful_harmful", "unqualified_advice"]
    for sub in ("terrorism", "theft", "trafficking", "weapons", "fraud", "cybercrime", "drugs", "violence"):
        assert p.category_of(sub) == "illicit_criminal"
    for sub in ("hate_discrimination", "harassment", "privacy", "defamation", "self_harm", "eating_disorders",
                "dangerous_challenges"):
        assert p.category_of(sub) == "hateful_harmful"
    assert p.subcategories("unqualified_advice") == ["medical", "financial", "legal"]
    assert set(p.vectors) >= {"psychological", "logic", "syntactic", "semantic", "perspective", "non_english",
                              "multi_turn"}
    assert len(p.response_guideline) >= 3 and p.behaviours_to_avoid
    assert "illegal" in p.preprompt("illicit_criminal")
    broken = tmp_path / "policy.yaml"
    broken.write_text("risk_categories: {}\n")
    with pytest.raises(DataError, match="missing required section"):
        load_policy(broken)


def test_shipped_recipes_load():
    from pathlib import Path

    for path in sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.model and cfg.eval.sets, path
    gpu = load_config(Path(__file__).parents[1] / "configs" / "llama2-7b-gpu.yaml")
    assert gpu.rlhf.ppo.learning_rate == 1e-6 and gpu.rlhf.ppo.batch_size == 512 and gpu.rlhf.ppo.kl_beta == 0.01
    assert gpu.reward_models.safety.learning_rate == 1e-5 and gpu.reward_models.safety.min_lr_rate == 0.1
