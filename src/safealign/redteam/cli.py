"""`safealign redteam --target PATH_OR_URL --seeds FILE [--previous RESULTS] --out DIR` (the main CLI registers
`redteam_command`). Heavy libraries load only when the command runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from safealign.errors import SafealignError


def load_redteam_config(path: Path | None = None, overrides: list[str] | None = None):
    """RedteamConfig from defaults, an optional YAML mapping (a file, or its `redteam:` section) and key=value."""
    import yaml

    from safealign.redteam.run import RedteamConfig

    raw: dict[str, Any] = {}
    if path is not None:
        if not path.exists():
            raise SafealignError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise SafealignError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise SafealignError(f"{path}: expected a mapping at the top level")
        raw = raw.get("redteam", raw)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SafealignError(f"--set {item!r}: expected key=value")
        raw[key.strip()] = yaml.safe_load(value)
    names = {f.name for f in dataclasses.fields(RedteamConfig)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise SafealignError(f"{path or '--set'}: unknown red-team key(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(names))}")
    return dataclasses.replace(RedteamConfig(), **raw)


def redteam_command(
    target: Annotated[str, typer.Option("--target", help="Model path, run directory, hub id, `embedded`, "
                                        "or an OpenAI-compatible URL (http://host:port/v1).")],
    seeds: Annotated[list[str], typer.Option("--seeds", help="Seed requests: a JSONL/CSV file or a set "
                                             "(seed-dev, seed-train, advbench, harmbench_val, do_not_answer, "
                                             "xstest_unsafe, multijail), `:N` samples N; repeatable.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: metrics.json, attempts.jsonl, "
                                      "successful_attacks.jsonl, redteam.md/.html.")],
    previous: Annotated[Optional[Path], typer.Option(
        "--previous", help="A previous red-team output folder or attempts.jsonl: its successes are re-sent for the "
        "fix rate.")] = None,
    attack: Annotated[Optional[list[str]], typer.Option("--attack", "-a", help="Attack name, vector:NAME or all; "
                                                        "repeatable (default: one of each technique).")] = None,
    judge: Annotated[Optional[str], typer.Option(help="Judge deciding success (default refusal-rules).")] = None,
    extra_judge: Annotated[Optional[list[str]], typer.Option(help="Another judge scoring the same answers "
                                                             "(e.g. harm); repeatable.")] = None,
    max_seeds: Annotated[Optional[int], typer.Option(help="Stable sample of at most this many seeds.")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="Target answer length (default 64).")] = None,
    pair_rounds: Annotated[Optional[int], typer.Option(help="PAIR rounds per seed; 0 disables (default 3).")] = None,
    pair_seeds: Annotated[Optional[int], typer.Option(help="Seeds given to PAIR (default 10).")] = None,
    attacker: Annotated[Optional[str], typer.Option(help="Attacker model spec or URL (default embedded).")] = None,
    attacker_model: Annotated[Optional[str], typer.Option(help="Served model name for an attacker URL.")] = None,
    target_model: Annotated[Optional[str], typer.Option(help="Served model name for a target URL.")] = None,
    system_prompt: Annotated[Optional[str], typer.Option(help="System prompt given to the target.")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Seconds per endpoint request (default 60).")] = None,
    datasets_dir: Annotated[Optional[Path], typer.Option(help="Public datasets folder.")] = None,
    holdout: Annotated[Optional[list[str]], typer.Option(help="JSONL of more evaluation prompts kept out of the "
                                                         "export; repeatable.")] = None,
    export: Annotated[Optional[bool], typer.Option("--export/--no-export",
                                                   help="Write successful_attacks.jsonl.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML with RedteamConfig keys "
                                                  "(or a `redteam:` section).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set",
                                                      help="key=value override of any RedteamConfig key.")] = None,
):
    """Red-team a model by attack vector: ASR per vector × risk category, throughput, fix rate, export."""
    from safealign.redteam.run import run_redteam

    cfg = load_redteam_config(config, set_)
    given = {"attacks": attack, "judge": judge, "extra_judges": extra_judge, "max_seeds": max_seeds,
             "max_new_tokens": max_new_tokens,
             "pair_rounds": pair_rounds, "pair_seeds": pair_seeds, "attacker": attacker,
             "attacker_model": attacker_model, "target_model": target_model, "system_prompt": system_prompt,
             "timeout": timeout, "datasets_dir": str(datasets_dir) if datasets_dir else None,
             "holdout_files": holdout, "export": export, "previous": str(previous) if previous else None}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in given.items() if v is not None})
    metrics = run_redteam(target, seeds, out, cfg)
    asr, tp = metrics["asr"], metrics["throughput"]
    from safealign.redteam.report import fmt

    typer.echo(f"attack success rate by vector ({metrics['judge']['name']}):")
    for vector, rate in asr["by_vector"].items():
        typer.echo(f"  {vector:14s} {fmt(rate)}")
    typer.echo(f"  {'all':14s} {fmt(asr['overall'])}")
    per_cpu = tp["successes_per_cpu_minute"]
    per_cpu_text = "n/a" if per_cpu is None else f"{per_cpu:.2f}"
    typer.echo(f"successes: {tp['successes_per_100_attempts']:.1f} per 100 attempts, {per_cpu_text} per CPU-minute "
               f"({tp['errors']} of {tp['attempts']} attempts failed)")
    if metrics.get("fix_rate"):
        typer.echo(f"fix rate vs {metrics['fix_rate']['previous']}: {fmt(metrics['fix_rate'])}")
    if metrics.get("export"):
        typer.echo(f"exported {metrics['export']['written']} successful attacks to {out / 'successful_attacks.jsonl'}")
    typer.echo(f"results: {out / 'metrics.json'}, {out / 'attempts.jsonl'}, {out / 'redteam.md'}")


if __name__ == "__main__":  # `python -m safealign.redteam.cli ...` works before the main CLI mounts the command
    import sys

    try:
        typer.run(redteam_command)
    except SafealignError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
