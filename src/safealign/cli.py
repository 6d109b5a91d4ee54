"""The `safealign` command: a thin layer over the pipeline and the stage modules."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from safealign.errors import SafealignError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make a chat LLM safe the Llama 2-Chat way, and prove it with numbers.")


def _setup() -> None:
    logging.basicConfig(level=os.environ.get("SAFEALIGN_LOG", "INFO"), format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for noisy in ("httpx", "urllib3", "datasets", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def run(
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Recipe YAML (configs/default.yaml)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run directory (default runs/<name>)")] = None,
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key=value overrides, e.g. sft.epochs=2")] = None,
):
    """Run the recipe: data → base eval → safety SFT → eval → final model + report. Finished stages are skipped."""
    from safealign.config import load_config
    from safealign.pipeline import run_pipeline

    cfg = load_config(config, overrides)
    run_dir = out or Path("runs") / cfg.name
    result = run_pipeline(cfg, run_dir)
    typer.echo(f"final model: {run_dir / 'final'}\nreport: {run_dir / 'report.html'} and {run_dir / 'report.md'}")
    head = result["stages"].get("final_eval", {}).get("headline", {})
    from safealign.report.build import fmt_rate

    for key, value in head.items():
        typer.echo(f"  {key}: {fmt_rate(value)}")


@app.command()
def chat(
    model: Annotated[str, typer.Option("--model", "-m", help="Model path, run directory, hub id or `embedded`")] = "embedded",
    system: Annotated[Optional[str], typer.Option(help="System prompt")] = None,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
):
    """Talk to a model by hand (empty line or Ctrl-D to quit)."""
    from safealign.generation import GenerationConfig, get_generator
    from safealign.models import load_model

    m, tok = load_model(model)
    gen = get_generator("transformers", model=m, tokenizer=tok)
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, system_prompt=system)
    history: list[dict[str, str]] = []
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            break
        if not line:
            break
        history.append({"role": "user", "content": line})
        rec = gen.generate([history], cfg)[0]
        history.append({"role": "assistant", "content": rec.response})
        typer.echo(f"model> {rec.response}")


@app.command("eval-rm")
def eval_rm(
    run_dir: Annotated[Optional[Path], typer.Option("--run", help="A run directory with reward_models/ and preferences/")] = None,
    safety_rm: Annotated[Optional[Path], typer.Option(help="Safety RM directory (default RUN/reward_models/safety_rm)")] = None,
    helpfulness_rm: Annotated[Optional[Path], typer.Option(help="Helpfulness RM directory")] = None,
    pairs: Annotated[Optional[Path], typer.Option(help="Dev pairs JSONL (default RUN/preferences/dev_pairs.jsonl)")] = None,
    hh_pairs: Annotated[int, typer.Option(help="HH-RLHF test pairs per RM (0 = skip)")] = 200,
    gate: Annotated[float, typer.Option(help="Safety gate threshold")] = 0.15,
    datasets_dir: Annotated[Optional[Path], typer.Option(help="Public datasets folder")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
):
    """Reward-model accuracy per rating level (Llama 2 Table 8), unsafe recall, and the safety gate."""
    import json

    from safealign.data.preferences import load_hh_rlhf, load_pairs
    from safealign.evaluate.reward_models import evaluate_reward_models
    from safealign.paths import dataset_file
    from safealign.train.reward_model import RewardModel

    if run_dir is None and (safety_rm is None or helpfulness_rm is None or pairs is None):
        raise SafealignError("give --run RUN, or all of --safety-rm, --helpfulness-rm and --pairs")
    safety_rm = safety_rm or run_dir / "reward_models" / "safety_rm"
    helpfulness_rm = helpfulness_rm or run_dir / "reward_models" / "helpfulness_rm"
    pairs = pairs or run_dir / "preferences" / "dev_pairs.jsonl"
    for p in (safety_rm, helpfulness_rm):
        if not (p / "config.json").exists():
            raise SafealignError(f"{p}: reward model not found (run `safealign run` with stages.reward_models=true)")
    hh_s = hh_h = []
    if hh_pairs:
        hh_s = load_hh_rlhf(dataset_file("hh_rlhf/harmless-base/test.jsonl.gz", datasets_dir), True, hh_pairs)
        hh_h = load_hh_rlhf(dataset_file("hh_rlhf/helpful-base/test.jsonl.gz", datasets_dir), False, hh_pairs)
    metrics, _ = evaluate_reward_models(RewardModel(safety_rm), RewardModel(helpfulness_rm), load_pairs(pairs),
                                        hh_s, hh_h, gate)
    if as_json:
        typer.echo(json.dumps(metrics, indent=2))
        return
    from safealign.report.build import fmt_rate

    for rm, sets in metrics["accuracy"].items():
        for name, table in sets.items():
            typer.echo(f"{rm} on {name}: " + "; ".join(f"{k} {fmt_rate(v)}" for k, v in table.items()))
    g = metrics["gate"]
    typer.echo(f"gate < {gate}: precision {g['precision']:.3f}, recall {g['recall']:.3f} (Llama 2: 0.89 / 0.55)")
    typer.echo(f"unsafe recall at σ < 0.5: {fmt_rate(metrics['unsafe_recall_at_0.5'])}")


def _mount_subcommands() -> None:
    from safealign.ablation import ablate_command
    from safealign.audit.cli import audit_command
    from safealign.evaluate.cli import compare_command, eval_command
    from safealign.judges.cli import app as judge_app
    from safealign.redteam.cli import redteam_command

    app.command("eval")(eval_command)
    app.command("compare")(compare_command)
    app.command("redteam")(redteam_command)
    app.command("ablate")(ablate_command)
    app.add_typer(judge_app, name="judge", help="Judges: validate against human labels.")
    app.command("audit", help="Training-data safety audit: PII, representation, toxicity, languages.")(audit_command)


def _exit_on_sigterm(signum, frame) -> None:
    # SystemExit unwinds through `finally`, so a stage killed by SIGTERM removes its temporary directory.
    raise SystemExit(128 + signum)


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _setup()
    _mount_subcommands()
    try:
        app()
    except SafealignError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
