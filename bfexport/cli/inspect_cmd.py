"""bfexport inspect: architecture, cost per layer and, with --data, behaviour on real inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.markup import escape
from rich.table import Table

from bfexport import data, summary
from bfexport.checkpoint import load_checkpoint, load_tokenizer_json
from bfexport.cli.args import console, data_options, emit, json_option, report_console
from bfexport.runtime import OnnxClassifier


def _load(target: str) -> tuple[Any, str, summary.Runner, Any, int | None]:
    """(config, flavor, runner, tokenizer, parameter count) for a checkpoint dir or an .onnx file."""
    if Path(target).is_dir():
        model = load_checkpoint(target)
        tokenizer = data.tokenizer_from_str(load_tokenizer_json(target), target)
        n_params = sum(p.numel() for p in model.parameters())
        flavor = summary.TORCH if model.config.adaptive else "dense"
        return model.config, flavor, summary.torch_runner(model), tokenizer, n_params
    classifier = OnnxClassifier(target)
    n_params = sum(int(np.prod(i.dims)) for i in classifier.exported.proto.graph.initializer)
    return classifier.config, classifier.exported.flavor, classifier.run, classifier.tokenizer, n_params


def _print(r: dict[str, Any]) -> None:
    a = r["architecture"]
    report_console.print(f"[bold]{escape(r['target'])}[/bold] ({r['flavor']}): {a['n_layers']} layers x "
                         f"{a['n_heads']} heads, d_model {a['d_model']}, d_ff {a['d_ff']}, max_length "
                         f"{a['max_length']}, {a['n_labels']} labels, {a['parameters']:,} parameters")
    report_console.print(f"budget thresholds {a['budget_thresholds']}, head caps {a['head_caps']}")
    b = r.get("data")
    if not b:
        return
    if b["accuracy"] is not None:
        report_console.print(f"accuracy {b['accuracy']:.4f} on {b['samples']} samples "
                             f"(mean length {b['mean_length']:.1f} tokens)")
    table = Table("layer", "mean k", "std k", "top k share", "k histogram (1..H)", "MFLOPs", "dense MFLOPs")
    for layer in range(a["n_layers"]):
        ad = b["adaptivity_per_layer"][layer]
        table.add_row(str(layer), f"{b['mean_heads_per_layer'][layer]:.2f}", f"{ad['std_k']:.2f}",
                      f"{ad['top_k_share']:.2f}",
                      " ".join(map(str, b["k_histogram_per_layer"][layer])),
                      f"{b['flops_per_layer'][layer] / 1e6:.2f}", f"{b['dense_flops_per_layer'][layer] / 1e6:.2f}")
    report_console.print(table)
    varying = sum(ad["adaptive"] for ad in b["adaptivity_per_layer"])
    report_console.print(f"FLOPs ratio vs dense: {b['flops_ratio']:.3f}; k varies per input in {varying} of "
                         f"{a['n_layers']} layers (two budgets each on >= {summary.ADAPTIVE_SHARE:.0%} of inputs)")


@click.command("inspect")
@click.argument("target", type=click.Path(exists=True))
@data_options()
@json_option
def command(target: str, data_path: str | None, samples: int | None, as_json: bool) -> None:
    """Describe TARGET, a checkpoint directory or an exported .onnx file.

    With --data: accuracy (when labelled), the distribution of k per layer (with its std and
    the share of the most common k: how adaptive each layer is), head usage,
    and FLOPs per layer against the dense model, counted as multiply-accumulates of the
    projections, attention products, FFN and router of the heads each input runs;
    flops_ratio is mean FLOPs at the current thresholds over mean dense FLOPs.
    """
    config, flavor, runner, tokenizer, n_params = _load(target)
    result: dict[str, Any] = {"target": target, "flavor": flavor,
                              "architecture": summary.architecture(config, n_params)}
    result.update({k: result["architecture"][k] for k in ("n_heads", "n_layers", "d_model", "d_ff", "max_length")})
    if data_path is not None:
        examples = data.read_examples(data_path, limit=samples)
        note = data.unlabelled_note(examples, data_path)
        if note:
            console.print(f"[yellow]note[/yellow]: {escape(note)}", highlight=False, soft_wrap=True)
        labelled = all(e.label is not None for e in examples)
        labels = data.label_ids(examples, config.labels) if labelled else None
        with console.status(f"running {len(examples)} samples"):
            outputs = summary.run_data(runner, tokenizer, config, [e.text for e in examples])
        result["data"] = summary.behaviour(config, flavor, outputs, labels)
        result.update({k: result["data"][k] for k in ("accuracy", "mean_heads_per_layer", "flops_ratio")})
    emit(result, as_json, _print)
