"""Progress with ETA for generation and judging: a rich bar on a terminal, log lines in a log file.

Training uses the Trainer's own bar.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

log = logging.getLogger("safealign.progress")


@contextlib.contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[int], None]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if not Console(stderr=True).is_terminal:
        done, t0, step = 0, time.perf_counter(), max(1, total // 10)

        def advance(n: int) -> None:
            nonlocal done
            before, done = done, done + n
            if done // step > before // step or done == total:
                rate = done / max(time.perf_counter() - t0, 1e-9)
                log.info("%s: %d/%d, ETA %.0f s", description, done, total, (total - done) / max(rate, 1e-9))

        yield advance
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)
