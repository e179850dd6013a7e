"""bfexport convert: checkpoint -> ONNX file (and optionally an Optimum-loadable directory)."""

from __future__ import annotations

from pathlib import Path

import click

from bfexport.checkpoint import load_checkpoint, load_tokenizer_json
from bfexport.cli.args import checkpoint_argument, console, data_options, emit, json_option, output_options
from bfexport.errors import BfexportError
from bfexport.files import Output, check_outputs
from converters import FLAVORS, export_with_metadata, save_onnx
from converters.hf import HF_DIR, write_hf_directory
from converters.onnx import MAX_OPSET, MIN_OPSET
from converters.static_heads import choose_static_heads


@click.command("convert")
@checkpoint_argument
@output_options("ONNX file to write (missing directories are created).")
@click.option("--flavor", type=click.Choice(sorted(FLAVORS)), default="adaptive", show_default=True,
              help="adaptive: only selected heads computed; masked: all heads computed then zeroed; "
                   "dense: ordinary attention, no router; static: fixed heads per layer; trt-plugin: "
                   "attention blocks as TensorRT plugin nodes (ONNX Runtime needs onnxruntime-extensions).")
@click.option("--heads", type=int, default=None, help="static: keep the N most used heads of each layer on --data.")
@click.option("--head-sets", default=None, help="static: explicit heads per layer, e.g. '0,1;2,3;0,5;1,2'.")
@data_options()
@click.option("--opset", type=int, default=17, show_default=True, help=f"ONNX opset ({MIN_OPSET}..{MAX_OPSET}).")
@click.option("--fp16", is_flag=True, help="Export weights and activations in float16 (logits stay float32).")
@click.option("--hf-dir", type=click.Path(file_okay=False), default=None,
              help="Also write a directory (model.onnx, config.json, tokenizer files) that Optimum's "
                   "ORTModelForSequenceClassification and a transformers pipeline load (needs the hf extra to "
                   "load, not to write).")
@json_option
def command(checkpoint: str, output: str, flavor: str, heads: int | None, head_sets: str | None,
            data_path: str | None, samples: int | None, opset: int, fp16: bool, hf_dir: str | None,
            force: bool, as_json: bool) -> None:
    """Export CHECKPOINT to ONNX with per-input head skipping.

    The file carries budget_thresholds and head_caps as optional inputs (defaulting to the
    checkpoint's values), so one file serves every operating point; logits, head_counts and
    selected_heads come out. The checkpoint's config and tokenizer are embedded as metadata.
    """
    outputs = [Output(Path(output), "-o", make_parents=True)]
    if hf_dir is not None:
        outputs.append(Output(Path(hf_dir), "--hf-dir", HF_DIR, make_parents=True))
    check_outputs(outputs, {"CHECKPOINT": checkpoint, "--data": data_path}, force=force)
    tokenizer_json = load_tokenizer_json(checkpoint)  # embedded in the export: a bad one fails here, not later
    model = load_checkpoint(checkpoint)
    options: dict[str, object] = {"opset": opset, "fp16": fp16}
    kind = FLAVORS[flavor]
    if kind.head_sets:
        options["heads"] = choose_static_heads(model, tokenizer_json, heads=heads, head_sets=head_sets,
                                               data_path=data_path, samples=samples)
    elif heads is not None or head_sets is not None:
        raise BfexportError("--heads / --head-sets only apply to --flavor static")
    config = kind(**options)  # type: ignore[arg-type]
    with console.status(f"exporting {flavor} flavor"):
        proto = export_with_metadata(model, config, tokenizer_json)
        for out in outputs:  # create missing output directories, as `optimum-cli export onnx` does
            out.path.parent.mkdir(parents=True, exist_ok=True)
        save_onnx(proto, output)
        if hf_dir is not None:
            write_hf_directory(output, hf_dir)
    result = {"output": output, "flavor": flavor, "opset": opset, "fp16": fp16,
              "bytes": Path(output).stat().st_size,
              "static_heads": getattr(config, "heads", None),
              "hf_dir": hf_dir}
    emit(result, as_json, lambda r: console.print(f"wrote {r['output']} ({r['flavor']}, opset {r['opset']}, "
                                                  f"{r['bytes'] / 1e6:.1f} MB)"))
