"""ONNX -> TensorRT engine, with the budgeted-attention plugin for the trt-plugin flavor.

`build_engine(onnx_path, engine_path, ...)` parses the file, registers the plugin when the
file has BudgetedAttention nodes, sets one optimization profile over (batch, seq) for
input_ids / attention_mask and over rows (1..max batch) for budget_thresholds / head_caps,
builds a strongly typed network (precision comes from the ONNX graph: TensorRT 11 removed
the FP16/INT8 builder flags), reuses and updates a timing cache, and writes the engine and a
metadata JSON beside it, each atomically.

tensorrt is imported only inside functions (converters/tensorrt/loader.py); without it they raise
BfexportError naming the install extra, and everything else in bfexport works.

UNVERIFIED: no code here that calls TensorRT has ever run. TensorRT cannot be installed on
the development machines (PyPI's wheels fetch their libraries from a host they cannot reach)
and the GPU machine has none. The plain helpers (profile_shapes, engine_metadata) and the
missing-TensorRT error are tested.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bfexport.errors import BfexportError
from bfexport.exported import load_exported
from bfexport.files import atomic_file, file_sha256
from bfexport.names import ATTENTION_MASK, BUDGET_THRESHOLDS, HEAD_CAPS, INPUT_IDS, PLUGIN_ID
from converters.tensorrt.loader import import_tensorrt
from converters.tensorrt.plugin import register_plugin


@dataclass(frozen=True)
class Profile:
    """One optimization profile: the min / opt / max batch and sequence length."""

    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    min_seq: int = 1
    opt_seq: int = 128
    max_seq: int = 256


def profile_shapes(profile: Profile, n_layers: int, *, max_length: int | None = None,
                   inputs: tuple[str, ...] = (INPUT_IDS, ATTENTION_MASK, BUDGET_THRESHOLDS, HEAD_CAPS),
                   ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) shapes per network input; BfexportError for an impossible profile.

    budget_thresholds / head_caps take 1 row (shared by the batch) or one per sample, so their
    rows run 1..max_batch with 1 as the optimum (the common case)."""
    p = profile
    ranges = ((p.min_batch, p.opt_batch, p.max_batch, "batch"), (p.min_seq, p.opt_seq, p.max_seq, "seq"))
    for lo, mid, hi, what in ranges:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, mid, hi)) or not 1 <= lo <= mid <= hi:
            raise BfexportError(f"profile: need 1 <= min <= opt <= max for {what}, got {lo}, {mid}, {hi}")
    if max_length is not None and p.max_seq > max_length:
        raise BfexportError(f"profile: max seq {p.max_seq} exceeds the model's max_length {max_length}")
    tokens = ((p.min_batch, p.min_seq), (p.opt_batch, p.opt_seq), (p.max_batch, p.max_seq))
    rows = ((1, n_layers), (1, n_layers), (p.max_batch, n_layers))
    shapes = {INPUT_IDS: tokens, ATTENTION_MASK: tokens, BUDGET_THRESHOLDS: rows, HEAD_CAPS: rows}
    return {name: shapes[name] for name in inputs if name in shapes}


def engine_metadata(onnx_path: Path, profile: Profile, shapes: dict[str, Any], *, flavor: str | None,
                    plugins: list[str], tensorrt_version: str, device: str | None) -> dict[str, Any]:
    """What the engine was built from and for; written as <engine>.json."""
    return {"onnx": str(onnx_path), "onnx_sha256": file_sha256(onnx_path), "flavor": flavor,
            "profile": asdict(profile), "shapes": {k: [list(s) for s in v] for k, v in shapes.items()},
            "plugins": plugins, "tensorrt_version": tensorrt_version, "device": device, "strongly_typed": True}


def metadata_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, min_batch: int = 1, opt_batch: int = 8,
                 max_batch: int = 32, min_seq: int = 1, opt_seq: int = 128, max_seq: int | None = None,
                 timing_cache: str | Path | None = None, prefer_aot: bool = True,
                 workspace_bytes: int | None = None) -> Path:
    """Build a TensorRT engine from an exported ONNX file; returns engine_path.

    Args:
        onnx_path: a file written by `bfexport convert` (any flavor; trt-plugin uses the plugin).
        engine_path: where the serialized engine goes; metadata goes to <engine_path>.json.
        min/opt/max_batch, min/opt/max_seq: the optimization profile (max_seq defaults to the
            model's max_length).
        timing_cache: a file to read kernel timings from (if it exists) and write them back to.
        prefer_aot: pick the plugin's AOT implementation (no Python needed at run time).
        workspace_bytes: cap on builder scratch memory (default: TensorRT's).

    UNVERIFIED: written against the TensorRT 10.9+/11 Python API; never run (see module doc).

    Example:
        build_engine("model.onnx", "model.plan", max_batch=32, max_seq=256)
    """
    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise BfexportError(f"{onnx_path}: file not found")
    exported = load_exported(onnx_path)
    cfg = exported.config
    profile = Profile(min_batch, opt_batch, max_batch, min_seq, opt_seq, cfg.max_length if max_seq is None else max_seq)
    plugins = []
    if exported.kind.custom_op:
        register_plugin()
        plugins.append(PLUGIN_ID)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if prefer_aot and hasattr(trt.NetworkDefinitionCreationFlag, "PREFER_AOT_PYTHON_PLUGINS"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.PREFER_AOT_PYTHON_PLUGINS)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BfexportError(f"{onnx_path}: TensorRT could not parse the model: {errors}")

    config = builder.create_builder_config()
    if workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    names = tuple(network.get_input(i).name for i in range(network.num_inputs))
    shapes = profile_shapes(profile, cfg.n_layers, max_length=cfg.max_length, inputs=names)
    unknown = sorted(set(names) - set(shapes))
    if unknown:
        raise BfexportError(f"{onnx_path}: unexpected network input(s) {', '.join(unknown)}")
    opt_profile = builder.create_optimization_profile()
    for name, (lo, mid, hi) in shapes.items():
        opt_profile.set_shape(name, lo, mid, hi)
    config.add_optimization_profile(opt_profile)

    cache_path = Path(timing_cache) if timing_cache is not None else None
    cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BfexportError(f"{onnx_path}: TensorRT failed to build an engine (see the messages above)")
    with atomic_file(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    if cache_path is not None:
        with atomic_file(cache_path) as tmp:
            tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    meta = engine_metadata(onnx_path, profile, shapes, flavor=exported.flavor, plugins=plugins,
                           tensorrt_version=str(trt.__version__), device=_device_name())
    with atomic_file(metadata_path(engine_path)) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return engine_path


def _device_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - metadata only
        return None
