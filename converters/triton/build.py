"""Write a deploy's model directories (classifier, tokenizer, ensemble) into a staging directory."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from bfexport.ladder_result import LadderResult
from converters.triton.configs import ensemble_config, header, model_config, tokenizer_config
from converters.triton.controller_dir import CONTROLLER_SUFFIX, write_controller
from converters.triton.layout import (
    CONFIG_FILE,
    ENSEMBLE_SUFFIX,
    LABELS_FILE,
    META_FILE,
    META_FORMAT,
    MODEL_FILES,
    README,
    TOKENIZER_JSON,
    TOKENIZER_MODEL_FILE,
    TOKENIZER_SUFFIX,
    VERSION,
)
from converters.triton.options import DeployOptions
from converters.triton.readmes import model_readme, tokenizer_version
from converters.triton.schema import render_config
from converters.triton.source import Prepared


def tokenizer_model_py() -> bytes:
    """The Python-backend tokenizer's model.py, as bfexport writes it: tokenizer_model.py in this package."""
    return resources.files("converters.triton").joinpath("tokenizer_model.py").read_bytes()


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def build(staging: Path, name: str, prepared: Prepared, options: DeployOptions, notes: list[str],
          ladder: LadderResult | None = None) -> dict[str, str]:
    """Write the model directories under `staging` (and the budget controller with a ladder);
    returns {role: model name}."""
    cfg = prepared.exported.config
    models = {"model": name}
    meta = {"format": META_FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": prepared.source, "backend": options.backend, "max_batch_size": options.max_batch_size,
            "budget_inputs": prepared.budget_inputs, "default_thresholds": prepared.thresholds,
            "default_caps": prepared.caps, "calibration": prepared.calibration, "labels": list(cfg.labels),
            "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "max_length": cfg.max_length}
    model_dir = staging / name
    version = model_dir / VERSION
    version.mkdir(parents=True)
    if options.backend == "onnxruntime":
        (version / MODEL_FILES["onnxruntime"]).write_bytes(prepared.proto.SerializeToString(deterministic=True))
    else:
        from converters.tensorrt import build_engine

        build_onnx = staging / ".build" / "model.onnx"
        build_onnx.parent.mkdir()
        build_onnx.write_bytes(prepared.proto.SerializeToString(deterministic=True))
        build_engine(build_onnx, version / MODEL_FILES["tensorrt"], max_batch=options.max_batch_size,
                     opt_batch=min(8, options.max_batch_size), opt_seq=min(128, cfg.max_length),
                     max_seq=cfg.max_length)
        shutil.rmtree(build_onnx.parent)
    _write_text(model_dir / LABELS_FILE, "".join(f"{label}\n" for label in cfg.labels))
    tokenizer = ensemble = None
    if prepared.tokenizer_json is not None:
        tokenizer, ensemble = name + TOKENIZER_SUFFIX, name + ENSEMBLE_SUFFIX
        models.update(tokenizer=tokenizer, ensemble=ensemble)
        if ladder is not None:
            models["controller"] = name + CONTROLLER_SUFFIX
    else:
        notes.append("the model carries no tokenizer: only the ids-in model was written (no text ensemble)")
    _write_text(model_dir / CONFIG_FILE, render_config(model_config(name, prepared, options),
                                                       header(f"{name}: BudgetFormer classifier, token ids in")))
    _write_text(model_dir / META_FILE, json.dumps({**meta, "role": "model", "models": models}, indent=2) + "\n")
    _write_text(model_dir / README, model_readme(name, prepared, options, tokenizer, ensemble))
    if tokenizer and ensemble:
        tok_dir = staging / tokenizer
        (tok_dir / VERSION).mkdir(parents=True)
        (tok_dir / VERSION / TOKENIZER_MODEL_FILE).write_bytes(tokenizer_model_py())
        _write_text(tok_dir / VERSION / TOKENIZER_JSON, prepared.tokenizer_json or "")
        _write_text(tok_dir / CONFIG_FILE, render_config(
            tokenizer_config(tokenizer, prepared, options),
            header(f"{tokenizer}: text -> token ids for {name} (Python backend)")))
        _write_text(tok_dir / META_FILE, json.dumps({**meta, "role": "tokenizer", "models": models,
                                                     "tokenizers_version": tokenizer_version()}, indent=2) + "\n")
        ens_dir = staging / ensemble
        (ens_dir / VERSION).mkdir(parents=True)  # Triton wants a version directory, even an empty one
        _write_text(ens_dir / LABELS_FILE, "".join(f"{label}\n" for label in cfg.labels))
        _write_text(ens_dir / CONFIG_FILE, render_config(
            ensemble_config(ensemble, name, tokenizer, prepared, options),
            header(f"{ensemble}: text in, {name} out (ensemble)")))
        _write_text(ens_dir / META_FILE, json.dumps({**meta, "role": "ensemble", "models": models}, indent=2) + "\n")
    if ladder is not None and "controller" in models:
        write_controller(staging, name, models, prepared, options, ladder, meta)
    return models
