"""Where things live: the public datasets folder and the cache for converted models and trained judges."""

from __future__ import annotations

import os
from pathlib import Path

from safealign.errors import SafealignError

DATASETS_ENV = "SAFEALIGN_DATASETS"
CACHE_ENV = "SAFEALIGN_CACHE"


def datasets_root(explicit: str | Path | None = None) -> Path:
    """The folder holding the public datasets (xstest/, advbench/, ...).

    Order: an explicit path (config value), then $SAFEALIGN_DATASETS, then `../shared/datasets`
    from the current directory (the layout of a checkout beside `shared/`).
    """
    candidates = []
    if explicit:
        candidates.append(("config", Path(explicit)))
    if os.environ.get(DATASETS_ENV):
        candidates.append((f"${DATASETS_ENV}", Path(os.environ[DATASETS_ENV])))
    if not candidates:
        candidates.append(("default", Path.cwd().parent / "shared" / "datasets"))
    source, path = candidates[0]
    if not path.is_dir():
        raise SafealignError(
            f"{path}: datasets folder not found (from {source}); set {DATASETS_ENV} or the config's "
            "`datasets_dir` to the folder that holds xstest/, advbench/, ..."
        )
    return path.resolve()


def dataset_file(rel: str, root: str | Path | None = None) -> Path:
    """A file inside the datasets folder, with an error naming it when it is missing."""
    path = datasets_root(root) / rel
    if not path.exists():
        raise SafealignError(f"{path}: dataset file not found; check {DATASETS_ENV} / `datasets_dir`")
    return path


def cache_dir(sub: str = "") -> Path:
    """$SAFEALIGN_CACHE or ~/.cache/safealign, created on demand."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "safealign")
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path
