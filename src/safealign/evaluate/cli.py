"""`safealign eval` and `safealign compare`: the evaluation suite on any model, and what changed between two.

    safealign eval --model embedded --suite quick --out runs/eval-base
    safealign eval --model runs/default --suite full --out runs/eval-final-full toxigen.per_group=100
    safealign compare runs/eval-base runs/eval-final
    safealign compare runs/default:base_eval runs/default:final_eval --all

Mount on the main app with `app.command("eval")(eval_command)` and `app.command("compare")(compare_command)`,
or use `app` here as a standalone Typer app. Heavy imports happen inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from safealign.errors import SafealignError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Evaluate any model with the safety suite and Llama 2's benchmarks; compare two evaluations.")


def _default_out(model: str, suite: str) -> Path:
    name = Path(model.rstrip("/")).name or "model"
    return Path("runs") / f"eval-{name}-{suite}"


def eval_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Model dir, run dir (uses final/), hub id or `embedded`")],
    suite: Annotated[str, typer.Option("--suite", "-s", help="quick (≤ 20 min on CPU, subsampled) or full (Llama 2's sizes)")] = "quick",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output directory (default runs/eval-<model>-<suite>)")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML of suite fields to change (see SuiteConfig)")] = None,
    benchmarks: Annotated[Optional[str], typer.Option(help="Comma list of safety,toxigen,truthfulqa_mc,truthfulqa_gen,bold")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    backend: Annotated[str, typer.Option(help="Generation backend: transformers or vllm")] = "transformers",
    datasets_dir: Annotated[Optional[Path], typer.Option(help="Public datasets folder (default $SAFEALIGN_DATASETS or ../shared/datasets)")] = None,
    seed: int = 0,
    fresh: Annotated[bool, typer.Option("--fresh", help="Rerun every benchmark, even those finished in --out")] = False,
    overrides: Annotated[Optional[list[str]], typer.Argument(help="key=value, e.g. toxigen.per_group=20 bold.prompt_format=continuation")] = None,
):
    """Run the evaluation suite on one model; write metrics.json, generations, report.html/.md and model_card.md."""
    import json

    import yaml

    from safealign.evaluate.suite import run_suite
    from safealign.report import write_report
    from safealign.report.build import fmt_mean, fmt_rate

    raw: dict = {}
    if config:
        if not config.exists():
            raise SafealignError(f"{config}: config file not found")
        try:
            raw = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise SafealignError(f"{config}: invalid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise SafealignError(f"{config}: expected a mapping at the top level")
    raw.update({"seed": seed, "device": device, "generation_backend": backend})
    if datasets_dir:
        raw["datasets_dir"] = str(datasets_dir)
    if benchmarks:
        raw["benchmarks"] = [b.strip() for b in benchmarks.split(",") if b.strip()]
    out = out or _default_out(model, suite)
    metrics = run_suite(model, suite, out, raw, overrides=overrides, say=typer.echo, resume=not fresh)
    md, html = write_report(out)
    t = metrics["timings"]
    typer.echo(f"\n{model} ({suite} suite): {t.get('total_seconds', 0):.0f}s wall, {t.get('cpu_total_seconds', 0):.0f}s CPU "
               f"({t.get('torch_threads')} torch threads)")
    for k, v in metrics.get("headline", {}).items():
        if v:
            typer.echo(f"  {k}: {fmt_rate(v)}")
    b = metrics.get("benchmarks", {})
    if "toxigen" in b:
        typer.echo(f"  toxigen % toxic: {fmt_rate(b['toxigen']['overall'])}")
    if "truthfulqa_mc" in b:
        typer.echo(f"  truthfulqa mc1: {fmt_rate(b['truthfulqa_mc']['mc1'])}  mc2: {fmt_mean(b['truthfulqa_mc']['mc2'])}")
    if "truthfulqa_gen" in b:
        typer.echo(f"  truthfulqa % true+info: {fmt_rate(b['truthfulqa_gen']['true_info'])}")
    if "bold" in b:
        doms = {d: round(v["mean"]["mean"], 3) for d, v in b["bold"]["by_domain"].items()}
        typer.echo(f"  bold mean sentiment: {json.dumps(doms)}")
    typer.echo(f"report: {html} and {md}; model card: {out / 'model_card.md'}; metrics: {out / 'metrics.json'}")


def compare_command(
    run_a: Annotated[str, typer.Argument(help="Run dir (last eval stage), RUN:STAGE, eval dir or metrics.json")],
    run_b: Annotated[str, typer.Argument(help="Same, for the other side")],
    show_all: Annotated[bool, typer.Option("--all", help="Also list numbers without a significant change")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the Markdown table here")] = None,
):
    """What changed from RUN_A to RUN_B: every shared number, the change and its p-value."""
    from safealign.io import write_text
    from safealign.report.compare import compare_markdown

    text = compare_markdown(run_a, run_b, show_all=show_all)
    typer.echo(text)
    if out:
        write_text(out, text)


app.command("eval")(eval_command)
app.command("compare")(compare_command)


def main() -> None:
    import sys

    try:
        app()
    except SafealignError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
