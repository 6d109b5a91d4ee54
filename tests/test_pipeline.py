"""The recipe runner: stages cached by hash, resume after a crash, bad input leaves the run directory alone."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import write_jsonl
from safealign.config import load_config
from safealign.errors import SafealignError
from safealign.pipeline import run_pipeline


def _cfg(tiny_model_dir, tiny_datasets, data_file, *extra):
    return load_config(None, [
        f"model={tiny_model_dir}", f"datasets_dir={tiny_datasets}", "data.use_seed=false",
        f"data.extra_files=[{data_file}]", "data.dev_fraction=0.3", "eval.judge=refusal-rules",
        "eval.max_new_tokens=4", "eval.sets={xstest_safe: null, xstest_unsafe: null, advbench: null}",
        "sft.epochs=1", "sft.batch_size=4", "device=cpu", "stages.reward_models=false", *extra])


def _snapshot(run_dir):
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_run_writes_contract_and_skips_finished_stages(tiny_model_dir, tiny_datasets, tmp_path, example_rows):
    data = write_jsonl(tmp_path / "train.jsonl", example_rows)
    run_dir = tmp_path / "run"
    cfg = _cfg(tiny_model_dir, tiny_datasets, data)
    result = run_pipeline(cfg, run_dir, progress_log=lambda _: None)
    for stage in ("data", "base_eval", "sft", "final_eval"):
        manifest = json.loads((run_dir / stage / "manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["hash"] and manifest["seconds"] >= 0
    assert (run_dir / "final" / "model.safetensors").exists()
    assert (run_dir / "report.html").exists() and "Violation rate" in (run_dir / "report.md").read_text()
    assert "Audit of the fine-tuning mix" in (run_dir / "report.md").read_text()
    assert result["stages"]["data"]["audit"]["documents"] == result["stages"]["data"]["train"]
    assert "config hash" in (run_dir / "config.yaml").read_text()
    head = result["stages"]["final_eval"]["headline"]
    assert head["violation_rate_core"]["n"] == 4  # 2 XSTest unsafe + 2 AdvBench
    assert not list(run_dir.glob(".*.tmp"))

    before = _snapshot(run_dir)
    run_pipeline(cfg, run_dir, progress_log=lambda _: None)
    after = _snapshot(run_dir)
    for stage in ("data", "base_eval", "sft", "final_eval"):
        assert after[f"{stage}/manifest.json"] == before[f"{stage}/manifest.json"], f"{stage} was re-run"

    changed = _cfg(tiny_model_dir, tiny_datasets, data, "sft.learning_rate=1e-3")
    run_pipeline(changed, run_dir, progress_log=lambda _: None)
    again = _snapshot(run_dir)
    assert again["base_eval/manifest.json"] == before["base_eval/manifest.json"]
    assert again["sft/manifest.json"] != before["sft/manifest.json"]
    assert again["final_eval/manifest.json"] != before["final_eval/manifest.json"]


def test_rlhf_stages_on_a_tiny_model(tiny_model_dir, tiny_datasets, tmp_path, example_rows):
    data = write_jsonl(tmp_path / "train.jsonl", example_rows)
    run_dir = tmp_path / "run"
    cfg = _cfg(tiny_model_dir, tiny_datasets, data, "stages.reward_models=true", "stages.base_eval=false",
               "stages.final_eval=false", "preferences.judge=refusal-rules", "preferences.n_prompts=8",
               "preferences.n_dev_prompts=4", "preferences.max_new_tokens=6", "reward_models.hh_eval_pairs=0",
               "reward_models.safety.trainable_layers=-1", "reward_models.helpfulness.lora=true",
               "reward_models.helpfulness.trainable_layers=1", "rlhf.heldout_prompts=4",
               "rlhf.rejection_sampling.max_prompts=4", "rlhf.rejection_sampling.k=2",
               "rlhf.rejection_sampling.max_new_tokens=4", "rlhf.rejection_sampling.sft.epochs=1",
               "rlhf.ppo.steps=1", "rlhf.ppo.batch_size=4", "rlhf.ppo.mini_batch_size=2",
               "rlhf.ppo.micro_batch_size=2", "rlhf.ppo.max_new_tokens=4", "rlhf.ppo.eval_every=1",
               "stage_eval.max_new_tokens=4", "stage_eval.sets={xstest_safe: 1}",
               "stages.context_distillation=true", "context_distillation.n_prompts=3",
               "context_distillation.helpful_examples=2", "context_distillation.max_new_tokens=4",
               "context_distillation.eval_max_new_tokens=4", "context_distillation.eval_sets={xstest_safe: 1}",
               "context_distillation.judge=refusal-rules", "context_distillation.sft.epochs=1",
               "stages.redteam=true", "redteam.attacks=[direct, leetspeak]", "redteam.max_new_tokens=4",
               "redteam_seeds=[seed-dev:2]", f"redteam.attacker={tiny_model_dir}", "redteam.attacker_max_new_tokens=8")
    result = run_pipeline(cfg, run_dir, progress_log=lambda _: None)
    assert (run_dir / "context_distillation" / "model" / "model.safetensors").exists()
    assert set(result["stages"]["redteam"]) == {"base", "final"}
    for stage in ("sft_eval", "rejection_sampling", "rejection_sampling_eval", "ppo", "ppo_eval",
                  "context_distillation", "redteam"):
        assert json.loads((run_dir / stage / "manifest.json").read_text())["status"] == "complete", stage
    assert "mean_gated" in result["stages"]["ppo_eval"]["reward"]
    assert (run_dir / "final" / "SOURCE").read_text().strip() == json.loads(
        (run_dir / "context_distillation" / "manifest.json").read_text())["hash"]
    assert not (run_dir / ".work").exists() or not any((run_dir / ".work").iterdir())
    prefs = result["stages"]["preferences"]
    assert prefs["train"]["prompts"] == 8 and prefs["train"]["pairs"] > 0
    assert (run_dir / "reward_models" / "safety_rm" / "model.safetensors").exists()
    assert (run_dir / "reward_models" / "helpfulness_rm" / "model.safetensors").exists()
    rm_eval = result["stages"]["rm_eval"]
    assert set(rm_eval["accuracy"]) == {"safety_rm", "helpfulness_rm"} and "gate" in rm_eval
    from safealign.data.preferences import load_pairs

    pairs = load_pairs(run_dir / "preferences" / "train_pairs.jsonl")
    assert all(p.rating and (p.chosen_safe is not False or p.rejected_safe is not True) for p in pairs)


def test_crash_mid_stage_leaves_no_half_stage_and_resumes(tiny_model_dir, tiny_datasets, tmp_path, example_rows,
                                                          monkeypatch):
    data = write_jsonl(tmp_path / "train.jsonl", example_rows)
    run_dir = tmp_path / "run"
    cfg = _cfg(tiny_model_dir, tiny_datasets, data)
    import safealign.train.sft as sft

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-training")

    monkeypatch.setattr(sft, "train_sft", killed)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(cfg, run_dir, progress_log=lambda _: None)
    assert sorted(p.name for p in run_dir.iterdir()) == ["base_eval", "config.yaml", "data"]
    base = (run_dir / "base_eval" / "manifest.json").stat().st_mtime_ns
    monkeypatch.undo()
    run_pipeline(cfg, run_dir, progress_log=lambda _: None)
    assert (run_dir / "base_eval" / "manifest.json").stat().st_mtime_ns == base
    assert (run_dir / "final" / "model.safetensors").exists()


def test_bad_input_leaves_run_directory_as_it_was(tiny_model_dir, tiny_datasets, tmp_path, example_rows):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("old: config\n")
    before = _snapshot(run_dir)
    bad_rows = [dict(r) for r in example_rows]
    bad_rows[4]["attack_vector"] = "mind_control"
    bad = write_jsonl(tmp_path / "bad.jsonl", bad_rows)
    with pytest.raises(SafealignError, match=r"bad\.jsonl:line 5 \(id=a2\): unknown attack vector"):
        run_pipeline(_cfg(tiny_model_dir, tiny_datasets, bad), run_dir, progress_log=lambda _: None)
    good = write_jsonl(tmp_path / "good.jsonl", example_rows)
    with pytest.raises(SafealignError, match="datasets folder not found"):
        run_pipeline(_cfg(tiny_model_dir, tmp_path / "missing", good), run_dir, progress_log=lambda _: None)
    assert _snapshot(run_dir) == before and (run_dir / "config.yaml").read_text() == "old: config\n"


def test_cli_reports_errors_on_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "safealign.cli", "run", "--config", str(tmp_path / "nope.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope.yaml'}: config file not found"]
    help_ = subprocess.run([sys.executable, "-m", "safealign.cli", "--help"], capture_output=True, text=True,
                           timeout=120)
    assert help_.returncode == 0 and "run" in help_.stdout and "chat" in help_.stdout


@pytest.mark.parametrize("name", ["rlhf-cpu.yaml", "context-distillation-cpu.yaml"])
def test_cpu_recipes_extend_the_default_so_its_stages_are_reused(name):
    """configs/*-cpu.yaml say "run with --out runs/default to reuse the default run's stages": that holds only
    while their data, SFT and evaluation settings equal the default's (stage hashes come from these)."""
    import dataclasses
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    default, other = load_config(root / "default.yaml"), load_config(root / name)
    for part in ("model", "seed", "data", "sft", "eval"):
        a, b = getattr(default, part), getattr(other, part)
        assert (dataclasses.asdict(a) if dataclasses.is_dataclass(a) else a) == \
            (dataclasses.asdict(b) if dataclasses.is_dataclass(b) else b), f"{name}: {part} differs from default.yaml"
    assert other.stages["reward_models"] and not default.stages["reward_models"]
