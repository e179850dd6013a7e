"""bfexport validate: PyTorch vs ONNX Runtime parity on real inputs and forced budgets."""

from __future__ import annotations

from typing import Any

import click

from bfexport import data
from bfexport.checkpoint import load_checkpoint
from bfexport.cli import EXIT_FAILED_CHECK
from bfexport.cli.args import checkpoint_argument, console, emit, json_option
from bfexport.errors import BfexportError
from bfexport.runtime import OnnxClassifier
from converters.validate import ParityReport, validate

DEFAULT_DATA = "examples/debian-sections/validation.jsonl.gz"


def _print(r: dict[str, Any]) -> None:
    verdict = "[green]PASS[/green]" if r["passed"] else "[red]FAIL[/red]"
    console.print(f"{verdict} {r['flavor']}: {r['samples']} samples {r['cases']}")
    console.print(f"  logits max |diff| {r['max_abs_diff']:.2e} (tolerance {r['tolerance']:.0e}), "
                  f"max rel diff {r['max_rel_diff']:.2e}")
    console.print(f"  head selection agreement {r['head_selection_agreement']:.4f}, "
                  f"prediction agreement {r['prediction_agreement']:.4f}")


@click.command("validate")
@checkpoint_argument
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", "data_path", type=click.Path(), default=DEFAULT_DATA, show_default=True,
              help="Texts to compare on (labels not needed).")
@click.option("--samples", type=click.IntRange(min=1), default=64, show_default=True)
@json_option
def command(checkpoint: str, model: str, data_path: str, samples: int, as_json: bool) -> None:
    """Check that MODEL (an exported .onnx) computes what CHECKPOINT computes in PyTorch.

    Compares logits (fp32 tolerance 1e-4 absolute) and each sample's selected heads per
    layer, on batches of mixed lengths, single inputs, every k = 1..H forced through the
    head caps, and per-sample thresholds. Exits 1 when they differ.
    """
    torch_model = load_checkpoint(checkpoint)
    classifier = OnnxClassifier(model)
    budget_keys = ("budget_thresholds", "head_caps")  # calibration may change the file's defaults
    if {k: v for k, v in classifier.config.to_dict().items() if k not in budget_keys} != \
            {k: v for k, v in torch_model.config.to_dict().items() if k not in budget_keys}:
        raise BfexportError(f"{model} was not exported from {checkpoint} (configs differ)")
    texts = [e.text for e in data.read_examples(data_path, limit=samples)]
    with console.status("comparing PyTorch and ONNX Runtime"):
        report: ParityReport = validate(torch_model, classifier, texts)
    emit(report.to_dict(), as_json, _print)
    if not report.passed:
        raise click.exceptions.Exit(EXIT_FAILED_CHECK)
