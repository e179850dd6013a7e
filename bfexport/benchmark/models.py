"""The models a run times: random weights of a shape, a checkpoint or exported file, a longer copy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from bfexport.benchmark.settings import ModelShape
from bfexport.checkpoint import load_checkpoint
from bfexport.exported import ExportedModel, load_exported
from bfexport.model import BudgetFormerForSequenceClassification
from converters.onnx.rebuild import rebuild_model


@dataclass
class BenchModel:
    """A model to time, under a name. source says where its weights came from; exported: the
    file a quick run times as is (None: a quick run times the model's default export)."""

    name: str
    model: BudgetFormerForSequenceClassification
    source: str = "random weights"
    exported: ExportedModel | None = None


def random_model(shape: ModelShape, max_length: int, seed: int = 0) -> BenchModel:
    torch.manual_seed(seed)
    return BenchModel(shape.name, BudgetFormerForSequenceClassification(shape.config(max_length)).eval())


def load_target(target: str) -> BenchModel:
    """A checkpoint directory or an exported .onnx file. A file's weights are rebuilt into PyTorch
    for the dense reference (and, in a full run, for every flavor's export)."""
    name = Path(target).resolve().name or "model"
    if Path(target).is_dir():
        return BenchModel(name, load_checkpoint(target), f"checkpoint weights ({target})")
    exported = load_exported(target)
    return BenchModel(name, rebuild_model(exported), f"exported file ({target}, {exported.flavor})", exported)


def timing_copy(model: BudgetFormerForSequenceClassification, max_length: int,
                seed: int = 0) -> tuple[BudgetFormerForSequenceClassification, list[str]]:
    """The same weights in a model that accepts max_length tokens and exports every flavor.

    Position embeddings past the checkpoint's max_length are random (std 0.02): only
    timing is measured, and nothing else changes. A dense-trained checkpoint is marked
    adaptive so its (present but untrained) router can be exported; k is forced anyway.
    Returns the model and notes on what was changed.
    """
    cfg = model.config
    notes: list[str] = []
    new_len = max(cfg.max_length, max_length)
    if new_len == cfg.max_length and cfg.adaptive:
        return model.eval(), notes
    if new_len > cfg.max_length:
        notes.append(f"max_length extended {cfg.max_length} -> {new_len} for timing: positions >= "
                     f"{cfg.max_length} use random embeddings")
    if not cfg.adaptive:
        notes.append("checkpoint trained dense: timed as adaptive with its untrained router (k is forced)")
    new_cfg = dataclasses.replace(cfg, max_length=new_len, adaptive=True)
    state = dict(model.state_dict())
    generator = torch.Generator().manual_seed(seed)
    old = state["pos_emb.weight"]
    extra = torch.randn(new_len - cfg.max_length, old.shape[1], generator=generator, dtype=old.dtype) * 0.02
    state["pos_emb.weight"] = torch.cat([old, extra])
    copy_ = BudgetFormerForSequenceClassification(new_cfg)
    copy_.load_state_dict(state)
    return copy_.eval(), notes
