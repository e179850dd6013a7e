"""A tiny checkpoint, its adaptive export and a ladder calibrated on it, for the controller's tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bfexport.checkpoint import save_checkpoint
from calibration.ladder import calibrate_ladder
from converters import AdaptiveExport, export_with_metadata, save_onnx
from tests.factories import LABELS, TEXTS, tiny_model


def tiny_ladder(work: Path, tokenizer: Any, targets: list[float]) -> tuple[Path, Path, Path]:
    """(checkpoint, model.onnx, ladder.json) under work: the ladder's FLOPs targets calibrated on TEXTS."""
    model = tiny_model(vocab_size=tokenizer.get_vocab_size())
    ckpt = save_checkpoint(model, work / "ckpt", tokenizer_json=tokenizer.to_str())
    onnx_path = work / "model.onnx"
    save_onnx(export_with_metadata(model, AdaptiveExport(), tokenizer.to_str()), onnx_path)
    data = work / "data.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": LABELS[i % 4]}) + "\n" for i, t in enumerate(TEXTS)))
    ladder, _ = calibrate_ladder(onnx_path, data, targets, measure_sessions=1)
    ladder.save(work / "ladder.json")
    return Path(ckpt), onnx_path, work / "ladder.json"
