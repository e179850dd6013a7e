"""Property-based parity: random shapes, router extremes and batches, every flavor.

Shapes span 1-6 layers, 1-16 heads, head widths 8-64 and sequences up to 40 tokens, so the
adaptive graph's three attention paths (shared at batch 1, pairs from seq 32, packed) all run.
The bounded default run keeps d_model <= 256 so it stays quick on CI's 2 cores; `-m slow` runs
300 cases up to d_model 1024.
The trt-plugin flavor runs through its ONNX Runtime custom op (onnxruntime-extensions).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bfexport import ort_custom_ops
from bfexport.model import BudgetFormerConfig, BudgetFormerForSequenceClassification
from converters import AdaptiveExport, DenseExport, MaskedExport, StaticExport, TrtPluginExport, export


@st.composite
def cases(draw, max_d_model: int):
    H = draw(st.integers(1, 16))
    head_dim = draw(st.sampled_from([w for w in (8, 16, 32, 64) if H * w <= max_d_model]))
    config = BudgetFormerConfig(vocab_size=draw(st.integers(5, 50)), max_length=draw(st.integers(1, 40)),
                                d_model=H * head_dim, n_heads=H,
                                n_layers=draw(st.integers(1, 6)), d_ff=draw(st.sampled_from([8, 32])),
                                labels=["a", "b", "c"], dropout=0.0,
                                budget_thresholds=None, head_caps=None)
    router = draw(st.sampled_from(["random", "ties", "one-hot", "huge"]))
    B = draw(st.integers(1, 4))
    lengths = draw(st.lists(st.integers(1, config.max_length), min_size=B, max_size=B))
    tau = draw(st.floats(0.01, 1.0))
    seed = draw(st.integers(0, 2**16))
    return config, router, lengths, tau, seed


def build(config: BudgetFormerConfig, router: str, seed: int) -> BudgetFormerForSequenceClassification:
    torch.manual_seed(seed)
    model = BudgetFormerForSequenceClassification(config).eval()
    H = config.n_heads
    with torch.no_grad():
        for block in model.blocks:
            proj = block.attn.router.proj
            if router == "ties":  # all-equal relevance: ranking is head order
                proj.weight.zero_()
                proj.bias.zero_()
            elif router == "one-hot":  # budget distribution concentrated on one k
                proj.weight.zero_()
                proj.bias.zero_()
                proj.bias[int(torch.randint(0, H, ()))] = 50.0
            elif router == "huge":
                proj.weight.normal_(0, 30.0)
            else:
                proj.weight.normal_(0, 1.0)
    return model


def check(case) -> None:
    config, router, lengths, tau, seed = case
    model = build(config, router, seed)
    rng = np.random.default_rng(seed)
    S = max(lengths)
    ids = rng.integers(0, config.vocab_size, (len(lengths), S)).astype(np.int64)
    mask = (np.arange(S)[None, :] < np.array(lengths)[:, None]).astype(np.int64)
    thresholds = np.full((1, config.n_layers), tau, dtype=np.float32)
    heads = [list(range(0, config.n_heads, 2))] * config.n_layers
    budgets = {"thresholds": thresholds[0].tolist()}
    for flavor, kwargs in ((AdaptiveExport(), budgets), (MaskedExport(), budgets), (TrtPluginExport(), budgets),
                           (DenseExport(), {"fixed_heads": [list(range(config.n_heads))] * config.n_layers}),
                           (StaticExport(heads=heads), {"fixed_heads": heads})):
        proto = export(model, flavor)
        session = (ort_custom_ops.session(proto) if isinstance(flavor, TrtPluginExport)
                   else ort.InferenceSession(proto.SerializeToString()))
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "thresholds" in kwargs:
            feeds["budget_thresholds"] = thresholds
        logits, counts, selected = session.run(["logits", "head_counts", "selected_heads"], feeds)
        ref = model.predict(torch.from_numpy(ids), torch.from_numpy(mask), **kwargs)
        np.testing.assert_allclose(logits, ref.logits.numpy(), atol=1e-4, rtol=0, err_msg=type(flavor).__name__)
        assert (counts == ref.head_counts.numpy()).all(), type(flavor).__name__
        assert (np.sort(selected, -1) == np.sort(ref.selected_heads(config.n_heads).numpy(), -1)).all()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(max_d_model=256))
def test_every_flavor_matches_pytorch_on_random_models(case) -> None:
    check(case)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(max_d_model=1024))
def test_every_flavor_matches_pytorch_long_run(case) -> None:
    check(case)
