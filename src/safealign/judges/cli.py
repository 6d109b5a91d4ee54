"""`safealign judge ...`: list the judges, train the trained ones, validate any of them against human labels.

Heavy libraries (torch, sentence-transformers, scikit-learn) are imported inside the commands so that
`safealign --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

app = typer.Typer(help="Independent judges (refusal, harm, toxicity) and their agreement with human labels.",
                  no_args_is_help=True, add_completion=False)


def _fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(1)


def _kwargs(model: str | None, base_url: str | None, args: list[str]) -> dict:
    out: dict = {}
    if model:
        out["model"] = model
    if base_url:
        out["base_url"] = base_url
    for item in args or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--arg expects key=value, found {item!r}")
        out[key.strip()] = value
    return out


def _print_table(v: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{v['judge']}[/] on {v['dataset']} (task {v['task']}), n={v['n']}, positives={v['positives']}")
    console.print(f"method: {v.get('method', '')}")
    t = Table("metric", "value")
    lo, hi = v["accuracy_ci95"]
    t.add_row("accuracy", f"{v['accuracy']:.4f}  [{lo:.4f}, {hi:.4f}]")
    for k in ("precision", "recall", "f1", "kappa", "roc_auc", "accuracy_3class"):
        if v.get(k) is not None:
            t.add_row(k, f"{v[k]:.4f}")
    console.print(t)
    (tn, fp), (fn, tp) = v["confusion"]["matrix"]
    cm = Table("human \\ judge", "negative", "positive", title="confusion matrix")
    cm.add_row("negative", str(tn), str(fp))
    cm.add_row("positive", str(fn), str(tp))
    console.print(cm)
    if v.get("per_group"):
        g = Table("group", "n", "accuracy", "precision", "recall", title="per group")
        for name, m in v["per_group"].items():
            g.add_row(name, str(m["n"]), f"{m['accuracy']:.3f}", f"{m['precision']:.3f}", f"{m['recall']:.3f}")
        console.print(g)
    if v.get("note"):
        console.print(f"note: {v['note']}")


@app.command("list")
def list_cmd() -> None:
    """List registered judge names."""
    from safealign.judges import DEFAULT_JUDGES, list_judges

    for name in list_judges():
        typer.echo(f"{name}{'  (default)' if name in DEFAULT_JUDGES else ''}")


@app.command()
def validate(
    judge: str = typer.Option("refusal", "--judge", "-j", help="Registry name, e.g. refusal, harm, toxicity, refusal-rules."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    datasets_dir: Path | None = typer.Option(None, "--datasets-dir", help="Folder with xstest/, do_not_answer/, ...; default $SAFEALIGN_DATASETS or ../shared/datasets."),
    task: str | None = typer.Option(None, "--task", help="refusal | harm | toxicity, for judges not trained on one (LLM judges)."),
    limit: int | None = typer.Option(None, "--limit", help="Stratified sample size for slow (LLM) judges."),
    model: str | None = typer.Option(None, "--model", help="Model path / hub id / endpoint model name (llama-guard, openai-compatible)."),
    base_url: str | None = typer.Option(None, "--base-url", help="Endpoint for openai-compatible."),
    arg: list[str] | None = typer.Option(None, "--arg", help="Extra judge constructor argument key=value (repeatable)."),
) -> None:
    """Agreement with held-out human labels: accuracy, precision, recall, f1, kappa, roc_auc, confusion matrix."""
    from safealign.errors import SafealignError
    from safealign.judges import get_judge
    from safealign.judges.validate import validate_judge

    ddir = str(datasets_dir) if datasets_dir else None
    try:
        kwargs = _kwargs(model, base_url, arg or [])
        if judge in ("refusal", "refusal-classifier", "harm", "toxicity"):
            kwargs.setdefault("verbose", True)
            kwargs.setdefault("datasets_dir", ddir)
        j = get_judge(judge, **kwargs)
        result = None if (task or limit) else j.validation(ddir)
        if result is None:
            result = validate_judge(j, ddir, task=task, limit=limit)
    except SafealignError as e:
        _fail(e)
    if json_out:
        typer.echo(json.dumps(result, indent=2, default=str))
    else:
        _print_table(result)


@app.command()
def train(
    judge: str = typer.Option(..., "--judge", "-j", help="refusal, refusal-classifier, harm or toxicity."),
    datasets_dir: Path | None = typer.Option(None, "--datasets-dir"),
    force: bool = typer.Option(False, "--force", help="Retrain even when cached weights match the data."),
) -> None:
    """Train (seeded) and cache a trained judge; prints where the weights went and their validation."""
    from safealign.errors import SafealignError
    from safealign.judges.trained import RECIPES
    from safealign.judges.trained import train as train_recipe

    if judge not in RECIPES:
        _fail(SafealignError(f"judge {judge!r} is not a trained judge; trained judges: {', '.join(RECIPES)}"))
    try:
        _, meta = train_recipe(RECIPES[judge], str(datasets_dir) if datasets_dir else None, force=force,
                               log=lambda m: typer.echo(m, err=True))
    except SafealignError as e:
        _fail(e)
    v = meta["validation"]
    typer.echo(f"{judge}: trained on {meta['n_train']} labels ({meta['dataset']}) in {meta['train_seconds']} s; "
               f"held-out accuracy {v['accuracy']:.4f}, roc_auc {v['roc_auc']:.4f}")


def main() -> None:  # pragma: no cover - `python -m safealign.judges.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
