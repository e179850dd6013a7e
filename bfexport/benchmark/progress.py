"""What a run shows while it runs: a progress bar that redraws only when asked, a busy-machine warning."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bfexport.benchmark.sweep import Progress as ProgressFn

QUIET_LOAD = 0.5  # a 1-minute load average above this at the start means someone else is using the cores


@contextlib.contextmanager
def progress_bar(console: Console) -> Iterator[ProgressFn]:
    """A rich progress bar on `console` (stderr in the CLI), redrawn only when the benchmark
    reports (once per round), so no refresh thread competes with the timed runs for the cores."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, auto_refresh=False, transient=True) as bar:
        task = bar.add_task("starting", total=None)

        def report(label: str, done: float, total: int) -> None:
            bar.update(task, description=label, completed=int(done), total=total, refresh=True)

        yield report


def warn_if_busy(loadavg: float | None, console: Console) -> None:
    """On `console` (stderr), before the run, so the user can stop it and wait."""
    if loadavg is not None and loadavg > QUIET_LOAD:
        console.print(f"[yellow]warning:[/yellow] load average {loadavg} at the start: other work is using the "
                      "cores, so these timings are noisy. Rerun on a quiet machine.")
