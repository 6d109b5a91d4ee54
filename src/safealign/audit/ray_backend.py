"""Ray Data backend: the same `audit_shard`, one Ray task per shard, on a local or remote cluster.

The dataset is the list of unfinished shard specs; an actor pool of `ray_workers` shard workers maps each spec
to its result (each actor loads the lexicon and the language model once). Workers read the corpus and write
shard results and redacted shards themselves, so on a multi-node cluster the corpus and OUT must be on storage
every node sees, and safealign must be installed on every node. The driver only merges small count dicts,
streamed back as shards finish, so its memory does not grow with the corpus.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from safealign.audit import toxicity
from safealign.audit.config import AuditConfig
from safealign.audit.readers import ShardSpec
from safealign.errors import SafealignError


class _ShardWorker:
    """A Ray Data actor: config, lexicon and scorer live here for the worker's lifetime."""

    def __init__(self, cfg: dict, out_dir: str, lexicon, scorer):
        self.cfg = AuditConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
        self.out = Path(out_dir)
        self.lexicon = lexicon
        self.scorer = scorer

    def __call__(self, row: dict) -> dict:
        from safealign.audit.shard import audit_shard

        spec = ShardSpec.from_dict(json.loads(row["spec"]))
        result = audit_shard(spec, self.cfg, self.lexicon, self.out, self.scorer)
        return {"result": json.dumps(result)}


def _connect(address: str, workers: int | None) -> bool:
    """ray.init for `address`; returns True when this call started Ray (and so must shut it down)."""
    try:
        import ray
    except ImportError:
        raise SafealignError("audit: --ray-address needs Ray Data (pip install 'ray[data]')") from None
    if ray.is_initialized():
        return False
    # Quiet: the audit prints its own progress; Ray's per-operator logging would drown it.
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    if address == "local":
        ray.init(num_cpus=workers or os.cpu_count(), **kwargs)
    else:
        ray.init(address=address, **kwargs)
    return True


def run_on_ray(
    specs: list[ShardSpec],
    cfg: AuditConfig,
    out: Path,
    scorer: toxicity.Scorer | None,
    lexicon=None,
    info: dict | None = None,
) -> Iterator[dict]:
    """Yield each shard's result as it finishes; starts (and stops) a local cluster for address "local".

    `info`, when given, receives "startup_seconds" (ray.init) and "workers" (actor pool size).
    """
    info = {} if info is None else info
    if not specs:
        return
    if lexicon is None:
        from safealign.audit.pipeline import _holistic_bias_dir
        from safealign.audit.representation import load_identity_lexicon

        lexicon = load_identity_lexicon(
            _holistic_bias_dir(cfg), cfg.identity_axes, cfg.identity_stopterms, cfg.holistic_bias_version
        )
    t0 = time.perf_counter()
    started = _connect(cfg.ray_address, cfg.ray_workers)
    info["startup_seconds"] = round(time.perf_counter() - t0, 3)
    import ray
    import ray.data

    try:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        workers = cfg.ray_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        info["workers"] = min(workers, len(specs))
        if isinstance(scorer, toxicity.JudgeScorer):
            scorer = toxicity.JudgeScorer(scorer.judge_name)  # ship the name, not the loaded model
        ds = ray.data.from_items([{"spec": json.dumps(s.as_dict())} for s in specs], override_num_blocks=len(specs))
        with warnings.catch_warnings():
            # max_restarts has no named parameter yet; Ray warns about passing it as a remote arg.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            ds = ds.map(
                _ShardWorker,
                fn_constructor_kwargs={
                    "cfg": cfg.as_dict(),
                    "out_dir": str(out.resolve()),
                    "lexicon": lexicon,
                    "scorer": scorer,
                },
                compute=ray.data.ActorPoolStrategy(size=min(workers, len(specs)), max_tasks_in_flight_per_actor=1),
                num_cpus=1,
                # A lost actor is not restarted: the shards it finished are on disk and a rerun resumes the rest.
                max_restarts=0,
            )
        for row in ds.iter_rows():
            yield json.loads(row["result"])
    finally:
        if started:
            ray.shutdown()
