"""bfexport's own ONNX Runtime sessions load adaptive/masked files without ONNX Runtime's
"Initializer ... appears in graph inputs" warnings (the budget inputs are overridable on
purpose: see bfexport.runtime.session_options)."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from bfexport.runtime import OnnxClassifier, session_options
from calibration.evaluate import Evaluator
from calibration.inputs import collect
from calibration.latency import OrtCpuRuntime
from converters import AdaptiveExport, MaskedExport, export_with_metadata, save_onnx
from converters.onnx import load_exported
from tests.factories import TEXTS, tiny_model

WARNING = "appears in graph inputs"


@pytest.mark.parametrize("flavor", [AdaptiveExport(), MaskedExport()], ids=["adaptive", "masked"])
def test_bfexport_sessions_do_not_warn_about_overridable_inputs(tmp_path: Path, tokenizer, capfd, flavor) -> None:
    model = tiny_model(vocab_size=tokenizer.get_vocab_size())
    path = save_onnx(export_with_metadata(model, flavor, tokenizer.to_str()), tmp_path / "m.onnx")
    exported = load_exported(path)
    capfd.readouterr()
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert WARNING in capfd.readouterr().err  # what a plain session prints: the check below can see it

    OnnxClassifier(exported).classify(["a library for parsing json"])
    Evaluator(exported, collect([(TEXTS[:4], None)], exported.config, tokenizer))
    OrtCpuRuntime(exported)
    ort.InferenceSession(str(path), session_options(2), providers=["CPUExecutionProvider"])
    assert WARNING not in capfd.readouterr().err
