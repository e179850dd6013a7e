"""Option groups shared by several commands, and the printing helpers they use."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

console = Console(stderr=True)  # progress and human text go to stderr; stdout carries --json

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout instead of text.")
data_option = click.option("--data", "data_path", type=click.Path(dir_okay=True), default=None,
                           help="Data file: .jsonl/.csv (gzip ok) with text[,label], or a saved Hugging Face dataset.")
MAX_THREADS = 4 * (os.cpu_count() or 1)  # beyond a few threads per core ONNX Runtime only slows down
THREADS = click.IntRange(1, MAX_THREADS)  # the type of every --threads option
force_option = click.option("--force", is_flag=True,
                            help="Replace existing outputs: files, and directories bfexport wrote before (a directory "
                                 "it did not write, or an input of this run, is never replaced).")
samples_option = click.option("--samples", type=click.IntRange(min=1), default=None,
                              help="Use at most this many rows of --data.")


def checkpoint_argument(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.argument("checkpoint", type=click.Path(exists=True, file_okay=False))(f)


def emit(result: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], None]) -> None:
    """One JSON object on stdout, or the human rendering."""
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        text(result)
