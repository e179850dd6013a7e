"""A local Hugging Face sequence classifier -> a bfexport checkpoint: its weights exactly, plus a
router per layer opened so that at the default budget every head runs (the original model)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bfexport.checkpoint import save_checkpoint
from bfexport.errors import BfexportError
from bfexport.files import file_sha256, read_json, regular_file
from bfexport.hf.architectures import Architecture, Layout, architecture
from bfexport.hf.tokenizer import import_tokenizer
from bfexport.hf.weights import read_weights, weights_file
from bfexport.model import BudgetFormerConfig, BudgetFormerForSequenceClassification, check_labels, show
from bfexport.warm_start import open_routers

IMPORT_JSON = "import.json"


def read_config(directory: Path) -> tuple[Architecture, BudgetFormerConfig]:
    """config.json -> the architecture it is read as and the BudgetFormerConfig of the import."""
    hf = read_json(regular_file(directory / "config.json", "no config.json (not a Hugging Face model directory)"))
    if not isinstance(hf, dict):
        raise BfexportError(f"{directory / 'config.json'}: expected a JSON object")
    arch = architecture(hf)
    try:
        config = BudgetFormerConfig(**arch.config(hf), labels=labels(hf), adaptive=True)
    except (TypeError, BfexportError) as e:
        raise BfexportError(f"{directory / 'config.json'}: {e}") from None
    return arch, config


def labels(hf: Mapping[str, Any]) -> list[str]:
    """Class names from id2label, in id order (ids 0..n-1 without gaps)."""
    id2label = hf.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        n = hf.get("num_labels", 2)
        return [f"LABEL_{i}" for i in range(n if isinstance(n, int) else 2)]
    try:
        ids = sorted(int(k) for k in id2label)
    except ValueError:
        raise BfexportError(f"id2label keys must be integers, got {show(list(id2label))}") from None
    if ids != list(range(len(ids))):
        raise BfexportError(f"id2label must number the classes 0..{len(ids) - 1}, got {show(ids)}")
    if len(ids) < 2:
        raise BfexportError("id2label has one class; a classifier needs two (regression is not supported)")
    return check_labels([id2label[str(i)] if str(i) in id2label else id2label[i] for i in ids])


def expected_shapes(layout: Layout, config: BudgetFormerConfig) -> dict[str, tuple[int, ...]]:
    """Every HF weight the import reads, with the shape config.json implies."""
    d, f, V = config.d_model, config.d_ff, config.vocab_size
    shapes: dict[str, tuple[int, ...]] = {
        layout.embeddings["tok_emb.weight"]: (V, d),
        layout.embeddings["pos_emb.weight"]: (config.max_length + config.position_offset, d)}
    if config.type_vocab_size:
        shapes[layout.embeddings["type_emb.weight"]] = (config.type_vocab_size, d)
    modules = {"ln_emb": (d,), "pooler": (d, d), "classifier": (config.n_labels, d)}
    for name, hf in layout.modules.items():
        shapes[hf + ".weight"], shapes[hf + ".bias"] = modules[name], (modules[name][0],)
    per_layer = {"ln_attn": (d,), "ffn.up": (f, d), "ffn.down": (d, f), "ln_ffn": (d,)}
    for layer in range(config.n_layers):
        for hf in layout.attention:
            shapes[hf.format(l=layer) + ".weight"], shapes[hf.format(l=layer) + ".bias"] = (d, d), (d,)
        for name, hf in layout.layer.items():
            shapes[hf.format(l=layer) + ".weight"] = per_layer[name]
            shapes[hf.format(l=layer) + ".bias"] = (per_layer[name][0],)
    return shapes


def _heads(weight: torch.Tensor, H: int) -> torch.Tensor:
    """An nn.Linear weight (d_out = H * dh, d_in) as per-head x @ W blocks: (H, d_in, dh)."""
    return weight.t().reshape(weight.shape[1], H, -1).permute(1, 0, 2)


def bfexport_state(layout: Layout, config: BudgetFormerConfig, hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The BudgetFormer state dict holding the HF weights (routers left out)."""
    H = config.n_heads
    state = {name: hf[key] for name, key in layout.embeddings.items() if key in hf}
    for name, key in layout.modules.items():
        state[name + ".weight"], state[name + ".bias"] = hf[key + ".weight"], hf[key + ".bias"]
    for layer in range(config.n_layers):
        q, k, v, o = (key.format(l=layer) for key in layout.attention)
        prefix = f"blocks.{layer}."
        state[prefix + "attn.qkv_weight"] = torch.cat([_heads(hf[m + ".weight"], H) for m in (q, k, v)], -1)
        state[prefix + "attn.qkv_bias"] = torch.cat([hf[m + ".bias"].reshape(H, -1) for m in (q, k, v)], -1)
        state[prefix + "attn.out_weight"] = hf[o + ".weight"].t().reshape(H, -1, config.d_model)
        state[prefix + "attn.out_bias"] = hf[o + ".bias"]
        for name, key in layout.layer.items():
            state[prefix + name + ".weight"] = hf[key.format(l=layer) + ".weight"]
            state[prefix + name + ".bias"] = hf[key.format(l=layer) + ".bias"]
    return {k: v.contiguous() for k, v in state.items()}


def import_model(directory: str | Path) -> tuple[BudgetFormerForSequenceClassification, str]:
    """The imported model (eval mode) and its tokenizer.json text; nothing is written."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BfexportError(f"{directory}: not a directory (a Hugging Face model saved with save_pretrained)")
    arch, config = read_config(directory)
    tokenizer_json = import_tokenizer(directory, config.vocab_size, config.pad_token_id)
    path = weights_file(directory)
    hf = read_weights(path, expected_shapes(arch.layout, config), arch.layout.ignored)
    state = bfexport_state(arch.layout, config, hf)
    with torch.device("meta"):
        model = BudgetFormerForSequenceClassification(config)
    routers = {k: torch.zeros(v.shape) for k, v in model.state_dict().items() if ".router." in k}
    model.load_state_dict({**state, **routers}, assign=True)
    open_routers(model)
    return model.eval(), tokenizer_json


def import_checkpoint(directory: str | Path, output: str | Path) -> BudgetFormerForSequenceClassification:
    """`bfexport import`: read a Hugging Face classifier directory and write the checkpoint, with
    import.json saying where it came from (the directory, its model_type, its weights' sha256)."""
    model, tokenizer_json = import_model(directory)
    weights = weights_file(Path(directory))
    source = {"source": str(directory), "model_type": read_json(Path(directory) / "config.json")["model_type"],
              "weights": weights.name, "weights_sha256": file_sha256(weights)}
    save_checkpoint(model, output, tokenizer_json=tokenizer_json, extra_json={IMPORT_JSON: source})
    return model
