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

from bfexport.data import read_tokenizer_file, tokenizer_from_str
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


WEIGHT_DTYPES = ("F32", "F16", "BF16")
"""Stored dtypes accepted: bfexport writes F32; F16 and BF16 widen to it exactly. F64 and the
rest are refused, since narrowing can overflow (1e300 becomes inf) or round."""


def load_config(directory: str | Path) -> BudgetFormerConfig:
    path = Path(directory) / CONFIG
    data = read_json(path)
    if not isinstance(data, dict):
        raise BfexportError(f"{path}: expected a JSON object")
    try:
        return BudgetFormerConfig.from_dict(data)
    except (TypeError, BfexportError) as e:
        raise BfexportError(f"{path}: {e}") from None


def load_checkpoint(directory: str | Path) -> BudgetFormerForSequenceClassification:
    """Load a checkpoint directory into an eval-mode model, refusing anything inconsistent.

    The model is built on the meta device (shapes, no memory) and the weights file's header
    checked against it before any tensor is read, so a config that does not match its weights
    costs nothing; the weights read then become the model's parameters, with no second copy.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise BfexportError(f"{directory}: not a checkpoint directory (expected {CONFIG} and {WEIGHTS} inside)")
    config = load_config(directory)
    weights = regular_file(directory / WEIGHTS, "missing weights file")
    with torch.device("meta"):
        model = BudgetFormerForSequenceClassification(config)
    model.load_state_dict(_read_weights(weights, {k: tuple(v.shape) for k, v in model.state_dict().items()}),
                          assign=True)
    return model.eval()


def _read_weights(path: Path, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file as float32, once its header matches `shapes`: names,
    shapes and dtypes are compared before any tensor is read (safetensors itself checks the
    byte ranges against the shapes and the file size), and values are checked after widening."""
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            missing, unexpected = sorted(set(shapes) - keys), sorted(keys - set(shapes))
            if missing or unexpected:
                raise BfexportError(f"{path}: the weights are not the ones config.json implies: "
                                    + "; ".join(f"{what} {_some(names)}" for what, names in
                                                (("missing", missing), ("unexpected", unexpected)) if names))
            for key, expected in shapes.items():
                stored = f.get_slice(key)
                if tuple(stored.get_shape()) != expected:
                    raise BfexportError(f"{path}: {key} has shape {tuple(stored.get_shape())}, config.json implies "
                                        f"{expected}")
                if stored.get_dtype() not in WEIGHT_DTYPES:
                    raise BfexportError(f"{path}: {key} is stored as {stored.get_dtype()}; accepted: "
                                        f"{', '.join(WEIGHT_DTYPES)} (bfexport writes F32)")
            state = {key: f.get_tensor(key).to(torch.float32) for key in shapes}
    except (SafetensorError, OSError, ValueError) as e:
        raise BfexportError(f"{path}: not a readable safetensors file ({e})") from None
    for key, tensor in state.items():
        if not bool(torch.isfinite(tensor).all()):
            raise BfexportError(f"{path}: {key} contains NaN or infinite values")
    return state


def _some(names: list[str], shown: int = 5) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def load_tokenizer_json(directory: str | Path) -> str:
    """The checkpoint's tokenizer.json text, once it parses, fits MAX_TOKENIZER_BYTES and its
    ids fit the config's vocab_size (convert embeds it in every export)."""
    vocab_size = load_config(directory).vocab_size
    path = Path(directory) / TOKENIZER
    text = read_tokenizer_file(path)
    tokenizer_from_str(text, str(path), vocab_size)
    return text
