"""The evaluation suite end to end on a tiny model and made-up data: presets, files, resume, CLI, compare."""

from __future__ import annotations

import json

import pytest
import yaml
from test_benchmarks import KeywordToxicity, write_benchmark_datasets

from safealign.errors import SafealignError


class ContainsJudge:
    """A TruthfulQA judge that calls an answer true/informative when it is longer than 3 characters."""

    def __init__(self, kind, datasets_dir=None):
        self.kind, self.name = kind, f"len-{kind}"

    def score(self, questions, answers):
        return [0.9 if len(a) > 3 else 0.1 for a in answers]

    def validation(self):
        return {"n": 4, "accuracy": 0.75, "dataset": "made up", "method": "none"}


@pytest.fixture
def suite_raw(tmp_path):
    from safealign.evaluate.truthfulqa import register_truthfulqa_judge
    from safealign.judges import register_judge

    register_judge("keyword-toxicity", KeywordToxicity)
    register_truthfulqa_judge("len", ContainsJudge)
    root = write_benchmark_datasets(tmp_path / "datasets")
    return {
        "datasets_dir": str(root), "device": "cpu",
        "safety": {"sets": {"xstest_safe": None, "xstest_unsafe": None, "advbench": None, "multijail_en": None,
                            "multijail_zh": None}, "judge": "refusal-rules", "max_new_tokens": 4, "batch_size": 4},
        "toxigen": {"groups": ["asian", "women"], "per_group": 2, "max_new_tokens": 4, "judge": "keyword-toxicity"},
        "truthfulqa": {"mc_questions": None, "gen_questions": None, "max_new_tokens": 4, "truth_judge": "len",
                       "info_judge": "len", "mc_batch_size": 3},
        "bold": {"domains": ["race", "religious_ideology"], "per_group": 1, "max_new_tokens": 4},
    }


def test_presets_quick_and_full_sizes():
    from safealign.evaluate.suite import suite_config

    quick, full = suite_config("quick"), suite_config("full")
    assert len(quick.toxigen.groups) == 13 and quick.toxigen.per_group >= 2
    assert full.toxigen.per_group * len(full.toxigen.groups) == 6500  # ≈ Llama 2's 6,514 revised prompts
    assert full.truthfulqa.mc_questions is None and full.truthfulqa.gen_questions is None
    assert full.bold.per_group is None and set(full.bold.drop_groups) == {"hinduism", "atheism"}
    assert all(v is None for v in full.safety.sets.values()) and "multijail_sw" in full.safety.sets
    assert (quick.toxigen.temperature, quick.toxigen.top_p, quick.bold.temperature) == (0.1, 0.9, 0.1)
    over = suite_config("quick", {"toxigen": {"per_group": 3}}, ["bold.per_group=2", "safety.sets={advbench: 5}"])
    assert (over.toxigen.per_group, over.bold.per_group, over.safety.sets) == (3, 2, {"advbench": 5})
    assert over.toxigen.max_new_tokens == quick.toxigen.max_new_tokens  # a mapping merges into the preset
    with pytest.raises(SafealignError, match="unknown benchmark"):
        suite_config("quick", {"benchmarks": ["mmlu"]})
    with pytest.raises(SafealignError, match="unknown suite"):
        suite_config("huge")
    with pytest.raises(SafealignError, match="unknown key"):
        suite_config("quick", {"toxigen": {"per_grup": 3}})


def test_run_suite_writes_every_benchmark_and_resumes(tiny_model_dir, suite_raw, tmp_path):
    from safealign.evaluate.suite import run_suite

    out = tmp_path / "eval"
    said: list[str] = []
    m = run_suite(str(tiny_model_dir), "quick", out, suite_raw, say=said.append)
    b = m["benchmarks"]
    assert set(b) == {"toxigen", "truthfulqa_mc", "truthfulqa_gen", "bold"} and m["suite"] == "quick"
    # safety keys stay on top, slice-one compatible, with MultiJail per language
    assert m["headline"]["false_refusal_rate_xstest_safe"]["n"] == 2
    assert set(m["by_language"]) == {"en", "zh"} and m["by_language"]["zh"]["n"] == 1
    assert m["sets"]["xstest_safe"]["full_refusal_rate"]["n"] == 2
    assert set(b["toxigen"]["by_group"]) == {"asian", "women"} and b["toxigen"]["overall"]["n"] == 4
    assert b["truthfulqa_mc"]["n"] == 2 and 0 <= b["truthfulqa_mc"]["mc2"]["mean"] <= 1
    assert b["truthfulqa_gen"]["true_info"]["n"] == 2
    assert set(b["bold"]["by_domain"]["religious_ideology"]["groups"]) == {"islam"}  # Hinduism, Atheism dropped
    assert set(m["judges"]) == {"refusal", "toxicity", "truthfulqa_truth", "truthfulqa_info"}
    assert m["judges"]["toxicity"]["validation"]["accuracy"] == 0.9
    assert "toxigen/prompts/hate_asian_1k.txt.gz" in m["data_hashes"]
    for f in ("metrics.json", "generations.jsonl", "toxigen.jsonl", "bold.jsonl", "truthfulqa_gen.jsonl",
              "truthfulqa_mc.jsonl"):
        assert (out / f).exists(), f
    assert json.loads((out / "metrics.json").read_text())["suite"] == "quick"
    # a second call finds every part done and reuses it
    said.clear()
    again = run_suite(str(tiny_model_dir), "quick", out, suite_raw, say=said.append)
    assert sum("reused" in s for s in said) == 5
    assert again["benchmarks"]["toxigen"] == b["toxigen"]
    # a changed setting reruns only its benchmark
    said.clear()
    run_suite(str(tiny_model_dir), "quick", out, suite_raw, overrides=["bold.per_group=2"], say=said.append)
    assert sum("reused" in s for s in said) == 4 and any(s.startswith("[bold] done") for s in said)


def test_eval_and_compare_commands(tiny_model_dir, suite_raw, tmp_path):
    from typer.testing import CliRunner

    from safealign.evaluate.cli import app

    cfg = tmp_path / "suite.yaml"
    cfg.write_text(yaml.safe_dump(suite_raw))
    runner = CliRunner()
    outs = []
    for seed in (0, 1):
        out = tmp_path / f"eval{seed}"
        res = runner.invoke(app, ["eval", "--model", str(tiny_model_dir), "--out", str(out), "--config", str(cfg),
                                  "--seed", str(seed), "--benchmarks", "safety,toxigen,bold"])
        assert res.exit_code == 0, res.output
        assert "toxigen % toxic" in res.output
        for f in ("report.html", "report.md", "model_card.md", "metrics.json", "report_metrics.json"):
            assert (out / f).exists(), f
        outs.append(out)
    html = (outs[0] / "report.html").read_text()
    assert "ToxiGen: % toxic generations per group" in html and "21.25%" in html  # Llama 2 7B beside ours
    res = runner.invoke(app, ["compare", str(outs[0]), str(outs[1]), "--all", "--out", str(tmp_path / "cmp.md")])
    assert res.exit_code == 0, res.output
    assert "numbers compared" in res.output and "ToxiGen Asian: % toxic" in res.output
    assert (tmp_path / "cmp.md").read_text().startswith("# ")
    res = runner.invoke(app, ["compare", str(outs[0]), str(tmp_path / "nowhere")])
    assert res.exit_code != 0
