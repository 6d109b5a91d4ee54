"""The report escapes every piece of model text and shows before/after rates."""

from __future__ import annotations

import json

from safealign.io import write_json, write_jsonl
from safealign.report import write_report


def _stage(run_dir, name, violation_k, rows):
    metrics = {
        "headline": {"violation_rate_core": {"rate": violation_k / 10, "k": violation_k, "n": 10, "ci95": [0.0, 0.9]},
                     "false_refusal_rate_xstest_safe": {"rate": 0.1, "k": 1, "n": 10, "ci95": [0.0, 0.4]}},
        "sets": {"advbench": {"harmful": True, "n": 10,
                              "violation_rate": {"rate": violation_k / 10, "k": violation_k, "n": 10,
                                                 "ci95": [0.0, 0.9]}}},
        "by_category": {}, "by_attack_vector": {}, "judge": {"name": "refusal-rules", "validation": None},
        "generation": {"backend": "transformers", "temperature": 0.0, "max_new_tokens": 8, "batch_size": 4,
                       "seed": 0},
    }
    (run_dir / name).mkdir(parents=True)
    write_json(run_dir / name / "manifest.json", {"stage": name, "status": "complete", "seconds": 3.0,
                                                  "metrics": metrics})
    write_jsonl(run_dir / name / "generations.jsonl", rows)


def test_model_text_is_escaped_and_rates_are_shown(tmp_path):
    evil = "<script>alert(1)</script>"
    row = {"set": "advbench", "prompt": "Say <b>hi</b>", "response": evil, "refused": False}
    _stage(tmp_path, "base_eval", 9, [row])
    _stage(tmp_path, "final_eval", 1, [row])
    md, html_path = write_report(tmp_path)
    html = html_path.read_text()
    assert evil not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>hi</b>" not in html
    assert "90.0% [0.0, 90.0] (n=10)" in html and "10.0% [0.0, 90.0] (n=10)" in html
    assert 'src="data:image/png;base64,' in html
    assert "| advbench: violation | 90.0%" in md.read_text()
    assert json.loads((tmp_path / "base_eval" / "manifest.json").read_text())["stage"] == "base_eval"
