"""Reading a Hugging Face checkpoint's weights without running anything in it.

model.safetensors: names, shapes and dtypes are checked from the header before a tensor is
read. pytorch_model.bin (a pickle) only through torch.load(weights_only=True), which refuses
any object but tensors and plain containers, so a payload fails to load instead of running;
its size is bounded before it is opened.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from bfexport.checkpoint import WEIGHT_DTYPES
from bfexport.errors import BfexportError
from bfexport.files import regular_file
from bfexport.model import MAX_PARAMETERS

SAFETENSORS, PICKLE = "model.safetensors", "pytorch_model.bin"
MAX_PICKLE_BYTES = 4 * MAX_PARAMETERS + (64 << 20)  # float32 weights of the largest model bfexport loads, + slack


def weights_file(directory: Path) -> Path:
    """The directory's weights: model.safetensors, else pytorch_model.bin; sharded ones are refused."""
    for name in (SAFETENSORS, PICKLE):
        if (directory / name).exists():
            return regular_file(directory / name, "missing weights file")
    for index in (SAFETENSORS + ".index.json", PICKLE + ".index.json"):
        if (directory / index).exists():
            raise BfexportError(f"{directory / index}: sharded checkpoints are not supported; save the model with "
                                "save_pretrained(..., max_shard_size='100GB') to get one file")
    raise BfexportError(f"{directory}: no {SAFETENSORS} or {PICKLE}")


def read_weights(path: Path, shapes: dict[str, tuple[int, ...]], ignored: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The tensors named in `shapes`, as float32, once every one is present with its shape.
    Keys ending in one of `ignored` (buffers such as position_ids) are skipped; any other key
    is refused, as it belongs to a different head or architecture."""
    if path.name == SAFETENSORS:
        return _read_safetensors(path, shapes, ignored)
    return _read_pickle(path, shapes, ignored)


def _check_keys(path: Path, keys: set[str], shapes: dict[str, tuple[int, ...]], ignored: tuple[str, ...]) -> None:
    missing = sorted(set(shapes) - keys)
    if missing:
        raise BfexportError(f"{path}: missing weight {missing[0]}" + (f" (and {len(missing) - 1} more)"
                                                                      if len(missing) > 1 else ""))
    unexpected = sorted(k for k in keys - set(shapes) if not k.endswith(ignored))
    if unexpected:
        raise BfexportError(f"{path}: unexpected weight {unexpected[0]} (not part of this architecture's "
                            "sequence classifier)")


def _check_shape(path: Path, key: str, shape: tuple[int, ...], expected: tuple[int, ...], dtype: str) -> None:
    if shape != expected:
        raise BfexportError(f"{path}: {key} has shape {shape}, config.json implies {expected}")
    if dtype not in WEIGHT_DTYPES:
        raise BfexportError(f"{path}: {key} is stored as {dtype}; accepted: {', '.join(WEIGHT_DTYPES)}")


def _finite(path: Path, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for key, tensor in state.items():
        if not bool(torch.isfinite(tensor).all()):
            raise BfexportError(f"{path}: {key} contains NaN or infinite values")
    return state


def _read_safetensors(path: Path, shapes: dict[str, tuple[int, ...]],
                      ignored: tuple[str, ...]) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            _check_keys(path, set(f.keys()), shapes, ignored)
            for key, expected in shapes.items():
                stored = f.get_slice(key)
                _check_shape(path, key, tuple(stored.get_shape()), expected, stored.get_dtype())
            state = {key: f.get_tensor(key).to(torch.float32) for key in shapes}
    except (SafetensorError, OSError, ValueError) as e:
        raise BfexportError(f"{path}: not a readable safetensors file ({e})") from None
    return _finite(path, state)


_DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def _read_pickle(path: Path, shapes: dict[str, tuple[int, ...]], ignored: tuple[str, ...]) -> dict[str, torch.Tensor]:
    size = path.stat().st_size
    if size > MAX_PICKLE_BYTES:
        raise BfexportError(f"{path}: {size:,} bytes, more than the {MAX_PICKLE_BYTES:,} of the largest model "
                            "bfexport loads")
    try:  # weights_only: tensors and containers only; anything else (a payload) is refused, never run
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BfexportError(f"{path}: refused: not a plain weights file ({reason[:200]})") from None
    if not isinstance(loaded, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in loaded.items()):
        raise BfexportError(f"{path}: expected a state dict (names -> tensors)")
    _check_keys(path, set(loaded), shapes, ignored)
    for key, expected in shapes.items():
        tensor = loaded[key]
        _check_shape(path, key, tuple(tensor.shape), expected, _DTYPE_NAMES.get(tensor.dtype, str(tensor.dtype)))
    return _finite(path, {key: loaded[key].to(torch.float32) for key in shapes})
