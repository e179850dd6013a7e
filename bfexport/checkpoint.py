"""Checkpoints are directories in the Hugging Face layout: config.json + model.safetensors
(+ tokenizer.json, training_args.json, metrics.json). Loading never executes code: JSON and
safetensors only, and every tensor is checked against the config before it is used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from bfexport.errors import BfexportError
from bfexport.files import DirKind, atomic_dir, read_json, regular_file
from bfexport.model import BudgetFormerConfig, BudgetFormerForSequenceClassification

CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer.json"
CHECKPOINT_DIR = DirKind("a checkpoint", CONFIG, "budget_thresholds")  # a key every saved config has


def save_checkpoint(model: BudgetFormerForSequenceClassification, directory: str | Path, *,
                    tokenizer_json: str | None = None, extra_json: dict[str, Any] | None = None) -> Path:
    """Write the checkpoint directory atomically: it appears complete or not at all. An existing
    directory is replaced only when it is empty or a bfexport checkpoint.

    extra_json maps file names (e.g. "metrics.json") to JSON-serialisable objects.
    """
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_dir(directory, CHECKPOINT_DIR) as tmp:
        (tmp / CONFIG).write_text(model.config.to_json())
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        if tokenizer_json is not None:
            (tmp / TOKENIZER).write_text(tokenizer_json)
        for name, obj in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    return Path(directory)


def load_config(directory: str | Path) -> BudgetFormerConfig:
    path = Path(directory) / CONFIG
    data = read_json(path)
    if not isinstance(data, dict):
        raise BfexportError(f"{path}: expected a JSON object")
    try:
        return BudgetFormerConfig.from_dict(data)
    except TypeError as e:
        raise BfexportError(f"{path}: {e}") from None


def load_checkpoint(directory: str | Path) -> BudgetFormerForSequenceClassification:
    """Load a checkpoint directory into an eval-mode model, refusing anything inconsistent."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BfexportError(f"{directory}: not a checkpoint directory (expected {CONFIG} and {WEIGHTS} inside)")
    config = load_config(directory)
    model = BudgetFormerForSequenceClassification(config)
    expected = model.state_dict()
    weights = regular_file(directory / WEIGHTS, "missing weights file")
    state: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(weights), framework="pt") as f:
            keys = set(f.keys())
            missing, unexpected = sorted(set(expected) - keys), sorted(keys - set(expected))
            if missing or unexpected:
                raise BfexportError(f"{weights}: missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
            for key, ref in expected.items():
                shape = tuple(f.get_slice(key).get_shape())
                if shape != tuple(ref.shape):
                    raise BfexportError(f"{weights}: {key} has shape {shape}, config.json implies {tuple(ref.shape)}")
                state[key] = f.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as e:
        raise BfexportError(f"{weights}: not a readable safetensors file ({e})") from None
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise BfexportError(f"{weights}: {key} contains NaN or infinite values")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return model.eval()


def load_tokenizer_json(directory: str | Path) -> str:
    return regular_file(Path(directory) / TOKENIZER, "missing tokenizer file").read_text()
