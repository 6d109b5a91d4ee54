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


def _mount_subcommands() -> None:
    try:
        from safealign.judges.cli import app as judge_app
    except ImportError:
        judge_app = None
    if judge_app is not None:
        app.add_typer(judge_app, name="judge", help="Judges: validate against human labels.")
    try:
        from safealign.audit.cli import audit_command
    except ImportError:
        return
    app.command("audit", help="Training-data safety audit: PII, representation, toxicity, languages.")(audit_command)


def main() -> None:
    _setup()
    _mount_subcommands()
    try:
        app()
    except SafealignError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
