"""Option groups shared by several commands, and the printing helpers they use."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console

from bfexport.runtime import MAX_THREADS
from calibration.runtimes import RUNTIMES

EXIT_FAILED_CHECK, EXIT_USER_ERROR, EXIT_INTERNAL_ERROR = 1, 2, 3  # 0 is success, 130 Ctrl-C

console = Console(stderr=True, soft_wrap=True)  # progress and human text on stderr, lines unwrapped; stdout: --json
# inspect's and bench's reports: stdout, so `> file` keeps them; wide when redirected, so tables are not cut
report_console = Console(width=None if sys.stdout.isatty() else 160)


@dataclass
class Verbosity:
    """The global -q / -v: below 0 nothing but errors, --json and reports; above 0 detail lines."""

    level: int = 0


verbosity = Verbosity()


def set_verbosity(level: int) -> None:
    verbosity.level = level
    console.quiet = level < 0


def detail(text: str) -> None:
    """A line on stderr with -v only (printed as is: no markup, not wrapped)."""
    if verbosity.level > 0:
        console.print(text, markup=False, highlight=False, soft_wrap=True)


def _verbosity_callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value:
        set_verbosity(-1 if param.name == "quiet" else int(value))


# -v / -q after a command name too (`bfexport bench M -q`), as before it
VERBOSITY_OPTIONS = [
    click.Option(["-v", "--verbose"], count=True, expose_value=False, callback=_verbosity_callback,
                 help="More detail on stderr."),
    click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, callback=_verbosity_callback,
                 help="No progress or info on stderr (errors, --json and reports stay)."),
]

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

DATA_FILE = "Data file: .jsonl/.csv (gzip ok) with text[,label], or a saved Hugging Face dataset."
THREADS = click.IntRange(1, MAX_THREADS)  # the type of every --threads option

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of text.")
force_option = click.option("--force", is_flag=True,
                            help="Replace existing outputs: files, and directories bfexport wrote before (a directory "
                                 "it did not write, or an input of this run, is never replaced).")


def _group(*options: Decorator) -> Decorator:
    """Several options as one decorator, listed in --help in the order given."""
    def apply(f: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            f = option(f)
        return f
    return apply


def data_options(about: str = "", *, required: bool = False, samples: int | None = None,
                 samples_about: str = "") -> Decorator:
    """--data PATH (passed as `data_path`) and --samples N; `about` says what the command does
    with the data, `samples` is the command's default row count (None: every row)."""
    return _group(
        click.option("--data", "data_path", type=click.Path(), required=required,
                     help=f"{DATA_FILE} {about}".rstrip()),
        click.option("--samples", type=click.IntRange(min=1), default=samples, show_default=samples is not None,
                     help=f"Use at most this many rows of --data{samples_about}."))


def threads_option(about: str, *, multiple: bool = False) -> Decorator:
    """--threads N, bounded by MAX_THREADS (repeatable with `multiple`)."""
    return click.option("--threads", "threads", type=THREADS, multiple=multiple, help=about)


def runtime_options(about: str) -> Decorator:
    """--runtime NAME (calibration's latency runtimes, ort-cpu by default) and --threads N."""
    runtimes = "; ".join(f"{name}: {cls.about}" for name, cls in RUNTIMES.items())
    return _group(
        click.option("--runtime", type=click.Choice(list(RUNTIMES)), default="ort-cpu", show_default=True,
                     help=f"Where latency is measured: {runtimes}. A runtime this machine cannot run is refused, "
                          f"naming what is missing. {about}"),
        threads_option("Intra-op threads (default: runtime's)."))


def output_options(about: str, *, default: str | None = None, dir_okay: bool = False) -> Decorator:
    """-o/--output PATH (required unless it has a default) and --force."""
    return _group(
        click.option("-o", "--output", type=click.Path(dir_okay=dir_okay), help=about,
                     **({"required": True} if default is None else {"default": default, "show_default": True})),
        force_option)


def model_argument(f: Callable[..., Any]) -> Callable[..., Any]:
    """MODEL: an exported .onnx file."""
    return click.argument("model", type=click.Path(exists=True, dir_okay=False))(f)


def checkpoint_argument(f: Callable[..., Any]) -> Callable[..., Any]:
    """CHECKPOINT: a checkpoint directory."""
    return click.argument("checkpoint", type=click.Path(exists=True, file_okay=False))(f)


def emit(result: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], None]) -> None:
    """One JSON object on stdout, or the human rendering."""
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        text(result)
