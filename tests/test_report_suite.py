"""Report, model card and compare over suite metrics: escaping, Llama 2 columns, every group, progression."""

from __future__ import annotations

import json
import math

import pytest

from safealign.io import write_json, write_jsonl

EVIL = "<script>alert(1)</script>"
GROUPS = ("asian", "mexican", "muslim", "physical_disability", "jewish", "middle_east", "chinese",
          "mental_disability", "latino", "native_american", "women", "black", "lgbtq")


def _rate(k, n):
    from safealign.stats import wilson

    return wilson(k, n).as_dict()


def _mean(mean, n, std=0.2):
    half = 1.96 * std / math.sqrt(n)
    return {"mean": mean, "n": n, "std": std, "ci95": [mean - half, mean + half]}


def suite_metrics(toxic_k: int, violation_k: int, model: str) -> dict:
    """Suite metrics shaped like run_suite's, with model text that tries to inject markup."""
    from safealign.report.llama2 import BOLD

    bold = {d: {"groups": {g: _mean(0.3, 20) for g in groups}, "mean": _mean(0.3, 20 * len(groups))}
            for d, groups in BOLD["Llama 2 7B"].items()}
    return {
        "suite": "quick", "model": model,
        "headline": {"violation_rate_core": _rate(violation_k, 100), "false_refusal_rate_xstest_safe": _rate(10, 100)},
        "sets": {"advbench": {"harmful": True, "n": 100, "violation_rate": _rate(violation_k, 100)},
                 "xstest_safe": {"harmful": False, "n": 100, "false_refusal_rate": _rate(10, 100),
                                 "full_refusal_rate": _rate(7, 100), "partial_refusal_rate": _rate(3, 100)},
                 "multijail_sw": {"harmful": True, "n": 8, "violation_rate": _rate(6, 8)}},
        "by_category": {"illicit_criminal": _rate(violation_k // 2, 50)}, "by_attack_vector": {},
        "by_language": {"sw": _rate(6, 8)},
        "judge": {"name": "refusal", "validation": {"n": 2250, "accuracy": 0.9, "precision": 0.95, "recall": 0.8}},
        "generation": {"backend": "transformers", "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 48,
                       "batch_size": 16, "seed": 0, "chat": True},
        "benchmarks": {
            "toxigen": {"overall": _rate(toxic_k, 130),
                        "by_group": {g: {"label": g, **_rate(toxic_k // 13, 10)} for g in GROUPS},
                        "samples": [{"group": "asian", "label": "hate", "prompt": "- a list\n-", "response": EVIL,
                                     "toxicity": 0.7}],
                        "generation": {"backend": "transformers", "temperature": 0.1, "top_p": 0.9, "max_new_tokens": 32,
                                       "batch_size": 16, "seed": 0, "chat": True, "prompt_format": "chat"}},
            "truthfulqa_mc": {"mc1": _rate(20, 60), "mc2": _mean(0.4, 60), "n": 60},
            "truthfulqa_gen": {"true": _rate(30, 60), "info": _rate(50, 60), "true_info": _rate(25, 60), "n": 60,
                               "samples": [{"category": "Misconceptions", "question": "Q <b>bold</b>?",
                                            "response": EVIL, "p_true": 0.5, "p_info": 0.5}]},
            "bold": {"by_domain": bold, "overall": _mean(0.3, 800),
                     "samples": [{"domain": "race", "group": "Asian_Americans", "prompt": "X is", "response": EVIL,
                                  "sentiment": 0.1}]},
        },
        "judges": {"refusal": {"name": "refusal", "validation": {"n": 2250, "accuracy": 0.9}},
                   "toxicity": {"name": "toxicity", "validation": {"n": 6514, "accuracy": 0.8, "roc_auc": 0.85,
                                                                   "dataset": "toxigen_annotated"}},
                   "truthfulqa_truth": {"name": "truthfulqa-truth-embed", "validation": {"error": "no labels"}}},
        "timings": {"safety": 10.0, "total_seconds": 12.0}, "data_hashes": {"toxigen/prompts/x.gz": "ab" * 32},
    }


def _stage(run_dir, name, metrics, started):
    (run_dir / name).mkdir(parents=True)
    write_json(run_dir / name / "manifest.json", {"stage": name, "status": "complete", "seconds": 5.0,
                                                  "started": started, "metrics": metrics})
    write_jsonl(run_dir / name / "generations.jsonl",
                [{"set": "advbench", "prompt": f"Say {EVIL}", "response": EVIL, "refused": False}])


def test_report_escapes_model_text_and_shows_llama2_beside_ours(tmp_path):
    from safealign.report import write_report

    _stage(tmp_path, "final_eval", suite_metrics(2, 10, "runs/x/sft/model"), "2025-01-02T00:00:00")
    _stage(tmp_path, "base_eval", suite_metrics(40, 80, "embedded"), "2025-01-01T00:00:00")
    md_path, html_path = write_report(tmp_path)
    html, md = html_path.read_text(), md_path.read_text()
    assert EVIL not in html and html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5
    assert "<b>bold</b>" not in html
    # progression in pipeline order, and a significant improvement marked
    assert html.index("<th>base_eval</th>") < html.index("<th>final_eval</th>")
    assert 'class="better"' in html
    # Llama 2 published numbers beside ours, for the same benchmark
    for ref in ("21.25%", "0.00%", "57.04%", "33.29%", "31.15%"):
        assert ref in html, ref
    # every ToxiGen group and every BOLD group has a row
    for label in ("Physical disability", "Middle Eastern", "LGBTQ", "Native American"):
        assert f"<td>{label}</td>" in html, label
    for label in ("Hispanic and Latino Americans", "Sikhism", "Fascism", "Railway industry", "American actresses"):
        assert label in html, label
    assert "Hinduism" not in html and "Atheism" not in html
    assert html.count('src="data:image/png;base64,') >= 4  # safety, ToxiGen, TruthfulQA, BOLD
    assert "| advbench: violation | 80.0%" in md and "MultiJail: violation rate per language" in md
    assert "XSTest safe: partial refusal" in md
    assert "validation figures unavailable" in md  # a judge without figures says so
    card = (tmp_path / "model_card.md").read_text()
    assert "# Model card" in card and "runs/x/sft/model" in card and "ToxiGen: % toxic generations (13 groups)" in card
    summary = json.loads((tmp_path / "report_metrics.json").read_text())
    assert list(summary["stages"]) == ["base_eval", "final_eval"]
    assert "samples" not in summary["stages"]["final_eval"]["benchmarks"]["toxigen"]
    assert summary["llama2_reference"]["toxigen"]["Llama 2 7B"]["overall"] == 0.2125


def test_report_of_an_eval_directory(tmp_path):
    from safealign.report import write_report

    write_json(tmp_path / "metrics.json", suite_metrics(3, 5, "embedded"))
    write_jsonl(tmp_path / "generations.jsonl", [{"set": "advbench", "prompt": "p", "response": EVIL, "refused": True}])
    _, html_path = write_report(tmp_path)
    html = html_path.read_text()
    assert "<th>eval</th>" in html and EVIL not in html and "eval: safety" in html


def test_compare_flags_significant_changes_with_hand_checked_p(tmp_path):
    from safealign.report.compare import Number, compare_markdown, p_value

    a = Number("x", "x", 0.5, "rate", 100, 50)
    b = Number("x", "x", 0.3, "rate", 100, 30)
    # pooled p = 0.4; se = sqrt(0.4 * 0.6 * 2 / 100); z = 0.2 / se = 2.8868; two-sided p = 0.00389
    assert p_value(a, b) == pytest.approx(0.003892, abs=1e-5)
    m1 = Number("m", "m", 0.40, "mean", 50, std=0.2)
    m2 = Number("m", "m", 0.45, "mean", 50, std=0.2)
    assert p_value(m1, m2) == pytest.approx(2 * 0.5 * math.erfc((0.05 / math.sqrt(0.0016)) / math.sqrt(2)))
    run = tmp_path / "run"
    _stage(run, "base_eval", suite_metrics(40, 80, "embedded"), "2025-01-01")
    _stage(run, "final_eval", suite_metrics(2, 10, "tuned"), "2025-01-02")
    text = compare_markdown(f"{run}:base_eval", f"{run}:final_eval")
    assert "ToxiGen: % toxic (all groups)" in text and "better (p<0.05)" in text
    assert "TruthfulQA MC1" not in text  # unchanged numbers are hidden by default
    assert "TruthfulQA MC1" in compare_markdown(f"{run}:base_eval", str(run), show_all=True)  # RUN = last stage


def test_report_shows_reward_model_evaluation(tmp_path):
    from safealign.report import write_report

    _stage(tmp_path, "base_eval", suite_metrics(3, 5, "embedded"), "2025-01-01")
    acc = {"significantly_better": _rate(8, 10), "overall": _rate(30, 40)}
    (tmp_path / "rm_eval").mkdir()
    write_json(tmp_path / "rm_eval" / "manifest.json", {"stage": "rm_eval", "seconds": 1.0, "metrics": {
        "accuracy": {"safety_rm": {"dev_safety": acc}}, "unsafe_recall_at_0.5": _rate(9, 10),
        "gate": {"threshold": 0.15, "precision": 0.9, "recall": 0.5}}})
    write_json(tmp_path / "rm_eval" / "plots.json", {"histograms": "iVBORw0KGgo="})
    md, html = write_report(tmp_path)
    text = html.read_text()
    assert "Reward models (rm_eval)" in text and "safety_rm on dev_safety" in text and "80.0% [49.0, 94.3] (n=10)" in text
    assert "data:image/png;base64,iVBORw0KGgo=" in text and "precision 0.900" in md.read_text()
    assert "<th>rm_eval</th>" not in text  # not an evaluation column
