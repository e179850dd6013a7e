"""bfexport import: a local Hugging Face sequence classifier -> a BudgetFormer checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from bfexport.checkpoint import CHECKPOINT_DIR
from bfexport.cli.args import console, emit, json_option, output_options
from bfexport.files import Output, check_outputs
from bfexport.hf import ARCHITECTURES, import_checkpoint

SUPPORTED = ", ".join(f"{a.classifier} ({t})" for t, a in ARCHITECTURES.items())


@click.command("import", help=f"""Import HF_DIR, a transformers sequence classifier saved with save_pretrained
(config.json, model.safetensors or pytorch_model.bin, and its tokenizer files), as a BudgetFormer checkpoint.

\b
Supported: {SUPPORTED}.

The weights are copied exactly; each layer gets a router that, at the default budget, runs every
head, so the imported model is the original one (logits within 1e-5). Budgetize it with
`bfexport train --init CKPT`. Nothing is downloaded; pytorch_model.bin is read with
torch.load(weights_only=True), which refuses anything but tensors.""")
@click.argument("hf_dir", type=click.Path(exists=True, file_okay=False))
@output_options("Checkpoint directory to write (an existing one is replaced only with --force).", dir_okay=True)
@json_option
def command(hf_dir: str, output: str, force: bool, as_json: bool) -> None:
    check_outputs([Output(Path(output), "-o", CHECKPOINT_DIR)], {"HF_DIR": hf_dir}, force=force)
    model = import_checkpoint(hf_dir, output)
    cfg = model.config
    result = {"checkpoint": output, "source": hf_dir, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads,
              "d_model": cfg.d_model, "vocab_size": cfg.vocab_size, "max_length": cfg.max_length, "labels": cfg.labels}
    emit(result, as_json, lambda r: console.print(
        f"imported {hf_dir} -> {output}: {r['n_layers']} layers x {r['n_heads']} heads, d {r['d_model']}, "
        f"{len(r['labels'])} labels, max length {r['max_length']}", markup=False, highlight=False))
