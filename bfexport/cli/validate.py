"""bfexport validate: PyTorch vs ONNX Runtime parity on real inputs and forced budgets."""

from __future__ import annotations

from typing import Any

import click

from bfexport import data
from bfexport.checkpoint import load_checkpoint
from bfexport.cli.args import (
    EXIT_FAILED_CHECK,
    checkpoint_argument,
    console,
    data_options,
    emit,
    json_option,
    model_argument,
)
from bfexport.errors import BfexportError
from bfexport.runtime import OnnxClassifier
from converters.validate import ParityReport, synthetic_texts, validate


def _print(r: dict[str, Any]) -> None:
    verdict = "[green]PASS[/green]" if r["passed"] else "[red]FAIL[/red]"
    d = r["data"]
    rows = (f"{d['rows']} synthetic texts (no --data)" if d["source"] is None
            else f"{d['rows']} of {d['rows_available']} rows of {d['source']}")
    console.print(f"{verdict} {r['flavor']}: {r['samples']} comparisons on {rows} {r['cases']}", highlight=False)
    tolerance = f"atol {r['tolerance']:g}" + (f", rtol {r['rtol']:g}" if r["rtol"] else "")
    console.print(f"  logits max |diff| {r['max_abs_diff']:.2e} ({tolerance}), "
                  f"max rel diff {r['max_rel_diff']:.2e}", highlight=False)
    console.print(f"  head selection agreement {r['head_selection_agreement']:.4f}, "
                  f"prediction agreement {r['prediction_agreement']:.4f}", highlight=False)
    for failure in r["failures"]:
        console.print(f"  [red]fail:[/red] {failure}", highlight=False)


@click.command("validate")
@checkpoint_argument
@model_argument
@data_options("Texts to compare on (labels not needed). Default: synthetic texts decoded from random ids of "
              "MODEL's embedded tokenizer, of mixed lengths up to past max_length.",
              samples=64, samples_about=" (or this many synthetic texts)")
@click.option("--atol", type=float, default=None, help="Absolute tolerance on logits [default: 1e-4 fp32, 2e-2 fp16].")
@click.option("--rtol", type=float, default=0.0, show_default=True,
              help="Relative tolerance: logits agree when |diff| <= atol + rtol * |PyTorch logit|.")
@json_option
def command(checkpoint: str, model: str, data_path: str | None, samples: int, atol: float | None, rtol: float,
            as_json: bool) -> None:
    """Check that MODEL (an exported .onnx) computes what CHECKPOINT computes in PyTorch.

    Compares logits (tolerance --atol/--rtol) and each sample's selected heads per layer, on
    batches of mixed lengths, single inputs, every k = 1..H forced through the head caps, and
    per-sample thresholds. Exits 1 when they differ, when any logit is NaN or infinite, or
    when an fp32 file changes any prediction.
    """
    torch_model = load_checkpoint(checkpoint)
    classifier = OnnxClassifier(model)
    budget_keys = ("budget_thresholds", "head_caps")  # calibration may change the file's defaults
    if {k: v for k, v in classifier.config.to_dict().items() if k not in budget_keys} != \
            {k: v for k, v in torch_model.config.to_dict().items() if k not in budget_keys}:
        raise BfexportError(f"{model} was not exported from {checkpoint} (configs differ)")
    if data_path is None:
        texts = synthetic_texts(classifier.tokenizer, samples, classifier.config.max_length)
        source: dict[str, Any] = {"source": None, "rows": len(texts), "rows_available": None}
    else:
        examples = data.read_examples(data_path)
        texts = [e.text for e in examples[:samples]]
        source = {"source": data_path, "rows": len(texts), "rows_available": len(examples)}
    with console.status("comparing PyTorch and ONNX Runtime"):
        report: ParityReport = validate(torch_model, classifier, texts, atol=atol, rtol=rtol)
    emit({**report.to_dict(), "data": source}, as_json, _print)
    if not report.passed:
        raise click.exceptions.Exit(EXIT_FAILED_CHECK)
