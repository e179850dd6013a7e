"""Writing exported models atomically, and reading back the bfexport metadata they carry.

Each export stores its checkpoint config, flavor and (static) head sets, and optionally the
tokenizer, in the ONNX file's metadata_props, so one .onnx file is enough to validate,
inspect, calibrate and serve it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from bfexport.errors import BfexportError
from bfexport.files import atomic_file, loads_json, regular_file
from bfexport.flavors import FLAVORS, ExportConfig, flavor_named
from bfexport.model import BudgetFormerConfig
from bfexport.names import (
    ATTENTION_MASK,
    BUDGET_INPUTS,
    BUDGET_THRESHOLDS,
    HEAD_CAPS,
    HEAD_COUNTS,
    INPUT_IDS,
    KEY_CONFIG,
    KEY_FLAVOR,
    KEY_HEADS,
    KEY_TOKENIZER,
    LOGITS,
    SELECTED_HEADS,
)


def set_metadata(proto: onnx.ModelProto, values: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in values.items():
        if key in existing:
            existing[key].value = value
        else:
            proto.metadata_props.add(key=key, value=value)


def save_onnx(proto: onnx.ModelProto, path: str | Path) -> Path:
    """Write `proto` to `path` atomically: the file appears complete or not at all."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_bytes(proto.SerializeToString(deterministic=True))
    return path


@dataclass
class ExportedModel:
    """An exported file and what bfexport recorded about it."""

    path: Path
    proto: onnx.ModelProto
    config: BudgetFormerConfig
    flavor: str
    static_heads: list[list[int]] | None
    tokenizer_json: str | None

    @property
    def default_thresholds(self) -> list[float]:
        """The thresholds the file runs with when a request carries none."""
        values = self._initializer(BUDGET_THRESHOLDS, self.config.budget_thresholds)
        return [float(str(np.float32(v))) for v in values]  # 0.05, not float32's 0.05000000074505806

    @property
    def default_caps(self) -> list[int]:
        return [int(v) for v in self._initializer(HEAD_CAPS, self.config.head_caps)]

    @property
    def kind(self) -> type[ExportConfig]:
        """The config type of this file's flavor, whose class facts say what it computes and needs."""
        return flavor_named(self.flavor)

    @property
    def fixed_heads(self) -> list[list[int]] | None:
        """Per layer, the heads a dense or static file always runs; None where the router picks."""
        if self.kind.routed:
            return None
        return self.static_heads if self.kind.head_sets else [list(range(self.config.n_heads))] * self.config.n_layers

    def _initializer(self, name: str, fallback: Sequence[float]) -> list[float]:
        for init in self.proto.graph.initializer:
            if init.name == name:
                values: list[float] = onnx.numpy_helper.to_array(init).reshape(-1).tolist()
                return values
        return list(fallback)


def load_exported(path: str | Path) -> ExportedModel:
    """Load an ONNX file written by bfexport, refusing files that are not ours, are corrupt, or
    whose metadata does not describe their graph (check_graph)."""
    path = regular_file(path)
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError and friends
        raise BfexportError(f"{path}: not a readable ONNX file ({type(e).__name__})") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    if KEY_CONFIG not in meta or KEY_FLAVOR not in meta:
        raise BfexportError(f"{path}: not a bfexport model (no {KEY_CONFIG} metadata); "
                            "export it with `bfexport convert`")
    try:
        raw = loads_json(meta[KEY_CONFIG], KEY_CONFIG)
        heads = loads_json(meta[KEY_HEADS], KEY_HEADS) if KEY_HEADS in meta else None
    except (json.JSONDecodeError, BfexportError) as e:  # BfexportError: nested too deeply, an integer too long
        raise BfexportError(f"{path}: corrupt bfexport metadata ({e})") from None
    if not isinstance(raw, dict):
        raise BfexportError(f"{path}: corrupt bfexport metadata ({KEY_CONFIG} is not a JSON object)")
    try:
        config = BudgetFormerConfig.from_dict(raw)
    except BfexportError as e:
        raise BfexportError(f"{path}: {e}") from None
    except TypeError as e:
        raise BfexportError(f"{path}: corrupt bfexport metadata ({e})") from None
    flavor = meta[KEY_FLAVOR]
    try:
        check_graph(proto, config, flavor, heads)
    except BfexportError as e:
        raise BfexportError(f"{path}: {e}; the metadata does not describe this graph (edited after export?): "
                            "export it again with `bfexport convert`") from None
    return ExportedModel(path, proto, config, flavor, heads, meta.get(KEY_TOKENIZER))


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    """Declared dims; None where symbolic (batch) or absent."""
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def check_graph(proto: onnx.ModelProto, config: BudgetFormerConfig, flavor: str, static_heads: Any) -> None:
    """Refuse a graph that is not the one `config` and `flavor` describe: budgets, FLOPs and
    labels are all computed from the metadata, so a file whose metadata claims other layer or
    head counts or sizes would get wrong reports instead of an error. Compares the metadata with
    the embedding, FFN, pooler and classifier weights (and which optional ones are there), the
    layer count, the I/O names and shapes, and (static) the head sets."""
    if flavor not in FLAVORS:
        raise BfexportError(f"unknown flavor {flavor!r} in {KEY_FLAVOR} (expected one of {', '.join(FLAVORS)})")
    facts = FLAVORS[flavor]
    c = config
    weights = {t.name: list(t.dims) for t in proto.graph.initializer}
    expected: dict[str, tuple[list[int], str]] = {  # name: (shape, the config fields it follows from)
        "tok_emb.weight": ([c.vocab_size, c.d_model], "vocab_size, d_model"),
        "pos_emb.weight": ([c.max_length + c.position_offset, c.d_model], "max_length, position_offset, d_model"),
        "classifier.weight": ([c.d_model, c.n_labels], "d_model, labels")}
    if c.type_vocab_size:
        expected["type_emb.weight"] = ([c.type_vocab_size, c.d_model], "type_vocab_size, d_model")
    if c.pooler != "none":
        expected["pooler.weight"] = ([c.d_model, c.d_model], "pooler, d_model")
    expected.update({f"blocks.{layer}.ffn.up.weight": ([c.d_model, c.d_ff], "d_model, d_ff")
                     for layer in range(c.n_layers)})
    if facts.routed:
        expected.update({name: ([1, c.n_layers], "n_layers") for name in BUDGET_INPUTS
                         if name in weights})  # a Triton copy has them as plain (required) inputs
        expected.update({f"blocks.{layer}.attn.router.proj.weight": ([c.d_model, 2 * c.n_heads], "d_model, n_heads")
                         for layer in range(c.n_layers)})
    elif facts.head_sets:
        if (not isinstance(static_heads, list) or len(static_heads) != c.n_layers
                or not all(isinstance(h, list) and h and all(type(i) is int and 0 <= i < c.n_heads for i in h)
                           for h in static_heads)):
            raise BfexportError(f"{KEY_HEADS} must list, for each of the {c.n_layers} layers, head indices in "
                                f"[0, {c.n_heads})")
        expected.update({f"blocks.{layer}.attn.qkv_weight":
                         ([c.d_model, 3 * len(h) * c.d_head], f"{KEY_HEADS}, d_model")
                         for layer, h in enumerate(static_heads)})
    for name, (shape, fields) in expected.items():
        if weights.get(name) != shape:
            found = "no such initializer" if name not in weights else f"it is {weights[name]}"
            raise BfexportError(f"config {fields} imply {name} of shape {shape}, but {found}")
    implied = {"type_emb.weight": ("type_vocab_size", c.type_vocab_size > 0),
               "ln_emb.weight": ("norm", c.norm == "post"), "ln_final.weight": ("norm", c.norm == "pre"),
               "pooler.weight": ("pooler", c.pooler != "none")}  # the optional weights: there iff the config says
    for name, (field_name, needed) in implied.items():
        if (name in weights) != needed:
            raise BfexportError(f"config {field_name} {getattr(c, field_name)!r} implies {'an' if needed else 'no'} "
                                f"initializer {name}, but the graph has {'none' if needed else 'one'}")
    layers = {int(n.split(".")[1]) for n in weights if n.startswith("blocks.") and n.split(".")[1].isdigit()}
    if layers != set(range(c.n_layers)):
        raise BfexportError(f"config n_layers is {c.n_layers}, but the graph has {len(layers)} blocks")
    inputs = {i.name: _dims(i) for i in proto.graph.input}
    outputs = {o.name: _dims(o) for o in proto.graph.output}
    io: list[tuple[dict[str, list[int | None]], str, list[int | None], str]] = [
        (inputs, INPUT_IDS, [None, None], ""), (inputs, ATTENTION_MASK, [None, None], ""),
        (outputs, LOGITS, [None, c.n_labels], "labels"), (outputs, HEAD_COUNTS, [None, c.n_layers], "n_layers"),
        (outputs, SELECTED_HEADS, [None, c.n_layers, c.n_heads], "n_layers, n_heads")]
    if facts.routed:
        io += [(inputs, name, [None, c.n_layers], "n_layers") for name in BUDGET_INPUTS]
    for where, name, want, fields in io:
        dims = where.get(name)
        if (dims is None or len(dims) != len(want)
                or any(w is not None and d != w for d, w in zip(dims, want, strict=True))):
            kind = "input" if where is inputs else "output"
            found = f"no {kind} {name}" if dims is None else f"it is {['?' if d is None else d for d in dims]}"
            wanted = [("batch" if i == 0 else "any") if w is None else w for i, w in enumerate(want)]
            raise BfexportError(f"{f'config {fields} imply ' if fields else 'bfexport graphs have '}{kind} {name} "
                                f"of shape {wanted}, but {found}")
