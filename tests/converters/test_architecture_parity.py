"""Every architecture variant (post-LN, activations, token types, position offset, first-token
pooling, poolers) exports to every flavor the registry holds with PyTorch's logits (1e-5, fp32)
and head sets, under budgets that skip heads (fp16 within 2e-2 at full budget); files rebuild
to the same model; `bfexport validate` passes on each file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from bfexport import ort_custom_ops
from bfexport.checkpoint import save_checkpoint
from converters import (
    AdaptiveExport,
    DenseExport,
    MaskedExport,
    StaticExport,
    TrtPluginExport,
    export,
    export_with_metadata,
    load_exported,
    save_onnx,
)
from converters.onnx.rebuild import rebuild_model
from converters.onnx.registry import REGISTRY
from tests.factories import VARIANTS, variant_model

HEAD_SETS = [[0, 2], [3], [1, 2, 3]]
FLAVORS = {
    "adaptive": AdaptiveExport(),
    "adaptive-opset23": AdaptiveExport(opset=23),
    "masked": MaskedExport(),
    "dense": DenseExport(),
    "static": StaticExport(heads=HEAD_SETS),
    "trt-plugin": TrtPluginExport(),
}
CAPS = np.array([[2, 3, 4]], dtype=np.int64)  # layers 0 and 1 never run every head


def test_every_registered_flavor_is_covered() -> None:
    assert {type(f) for f in FLAVORS.values()} == set(REGISTRY)


def batch(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = np.array([32, 3, 11, 1, 20])
    S = int(lengths.max())
    mask = (np.arange(S)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, rng.integers(1, 120, (len(lengths), S)), 0).astype(np.int64)
    thresholds = rng.uniform(0.05, 1.0, (len(lengths), 3)).astype(np.float32)  # per sample and layer
    return ids, mask, thresholds


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_matches_pytorch(variant: str, flavor: str) -> None:
    model = variant_model(variant)
    config = FLAVORS[flavor]
    proto = export(model, config)
    session = (ort_custom_ops.session(proto) if isinstance(config, TrtPluginExport)
               else ort.InferenceSession(proto.SerializeToString()))
    ids, mask, thresholds = batch(0)
    feeds = {"input_ids": ids, "attention_mask": mask}
    if config.routed:
        feeds.update(budget_thresholds=thresholds, head_caps=CAPS)
        kwargs: dict[str, object] = {"thresholds": torch.from_numpy(thresholds), "caps": CAPS}
    else:
        heads = HEAD_SETS if isinstance(config, StaticExport) else [list(range(4))] * 3
        kwargs = {"fixed_heads": heads}
    logits, counts, selected = session.run(["logits", "head_counts", "selected_heads"], feeds)
    ref = model.predict(torch.from_numpy(ids), torch.from_numpy(mask), **kwargs)
    np.testing.assert_allclose(logits, ref.logits.numpy(), atol=1e-5, rtol=0)
    assert (counts == ref.head_counts.numpy()).all()
    assert (selected == ref.selected_heads(4).numpy()).all()
    if config.routed:
        assert (counts[:, :2] < 4).all() and len(np.unique(counts)) > 1  # heads were skipped, budgets varied


@pytest.mark.parametrize("flavor", [AdaptiveExport(fp16=True), TrtPluginExport(fp16=True)],
                         ids=["adaptive", "trt-plugin"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_fp16_export_stays_close(variant: str, flavor: AdaptiveExport | TrtPluginExport) -> None:
    """fp16 at full budget (tau 1 runs every head in every runtime): logits within validate's fp16 tolerance."""
    model = variant_model(variant)
    proto = export(model, flavor)
    session = (ort_custom_ops.session(proto) if isinstance(flavor, TrtPluginExport)
               else ort.InferenceSession(proto.SerializeToString()))
    ids, mask, _ = batch(1)
    logits, counts = session.run(["logits", "head_counts"], {"input_ids": ids, "attention_mask": mask,
                                                             "budget_thresholds": np.ones((1, 3), np.float32)})
    ref = model.predict(torch.from_numpy(ids), torch.from_numpy(mask), thresholds=[1.0] * 3)
    assert (counts == 4).all() and (ref.head_counts == 4).all()
    np.testing.assert_allclose(logits, ref.logits.numpy(), atol=2e-2, rtol=0)


@pytest.mark.parametrize("flavor", ["adaptive", "dense"])  # per-head and standard attention layouts
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_rebuilds_from_its_export(variant: str, flavor: str, tmp_path: Path) -> None:
    model = variant_model(variant)
    path = save_onnx(export_with_metadata(model, FLAVORS[flavor]), tmp_path / "model.onnx")
    rebuilt = rebuild_model(load_exported(path))
    assert rebuilt.config.to_dict() == {**model.config.to_dict(), "adaptive": flavor == "adaptive"}
    for name, ours in model.state_dict().items():
        if flavor == "adaptive" or ".router." not in name:  # a dense file has no router
            assert torch.equal(rebuilt.state_dict()[name], ours), name


CLI_FLAVORS = {"adaptive": [], "masked": ["--flavor", "masked"], "dense": ["--flavor", "dense"],
               "static": ["--flavor", "static", "--head-sets", "0,2;3;1,2,3"], "trt-plugin": ["--flavor", "trt-plugin"]}


@pytest.mark.parametrize("variant", VARIANTS)
def test_validate_passes_on_every_flavor(bfexport, tokenizer, tmp_path: Path, variant: str) -> None:
    model = variant_model(variant, vocab_size=tokenizer.get_vocab_size(), head_caps=[2, 3, 4],
                          budget_thresholds=[0.5, 0.3, 0.9])
    checkpoint = save_checkpoint(model, tmp_path / "ckpt", tokenizer_json=tokenizer.to_str())
    for flavor, args in CLI_FLAVORS.items():
        path = tmp_path / f"{flavor}.onnx"
        assert bfexport("convert", checkpoint, "-o", path, *args).returncode == 0, flavor
        result = bfexport("validate", checkpoint, path, "--samples", 16, "--json")
        assert result.returncode == 0, (flavor, result.stdout, result.stderr)
        report = json.loads(result.stdout)
        assert report["passed"] and report["head_selection_agreement"] == 1.0, flavor
