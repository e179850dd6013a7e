"""The benchmark-only graphs that split the adaptive graph's overhead (bfexport/benchmark/
decomposition.py): the router floor computes static attention and reports the router's heads;
a one-path graph is the adaptive graph wherever its Ifs would pick that path."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from bfexport.benchmark.decomposition import one_path_export, router_floor_export, rule_path
from bfexport.errors import BfexportError
from converters import AdaptiveExport, StaticExport, export
from converters.onnx.adaptive import PAIRS_MIN_SEQ
from tests.factories import tiny_model

H, L = 4, 3  # tiny_model's heads and layers
OUTPUTS = ["logits", "head_counts", "selected_heads"]


def run(proto, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = {o.name for o in session.get_outputs()}
    wanted = {i.name for i in session.get_inputs() + session.get_overridable_initializers()}
    return session.run([o for o in OUTPUTS if o in names], {k: v for k, v in inputs.items() if k in wanted})


def feeds(batch: int, seq: int, caps: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch * 100 + seq)
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[-1, seq // 2:] = 0
    return {"input_ids": rng.integers(0, 100, (batch, seq)).astype(np.int64), "attention_mask": mask,
            "head_caps": caps.astype(np.int64), "budget_thresholds": np.full((1, L), 0.7, np.float32)}


def test_router_floor_has_the_static_logits_and_the_routers_heads() -> None:
    """Layer 0 reads the same hidden state in both graphs, so its router chooses the same heads;
    later layers read static attention's output (the floor never claims the adaptive heads there)."""
    model = tiny_model()
    inputs = feeds(5, 12, np.full((1, L), H))  # no cap: k is the router's, and it varies by sample
    floor = run(router_floor_export(model, 2), inputs)
    static = run(export(model, StaticExport(heads=[[0, 1]] * L)), inputs)
    adaptive = run(export(model, AdaptiveExport()), inputs)
    np.testing.assert_allclose(floor[0], static[0], atol=1e-5, rtol=0)
    assert len(np.unique(adaptive[1][:, 0])) > 1  # the router's k differs between samples here
    assert (floor[1][:, 0] == adaptive[1][:, 0]).all() and (floor[2][:, 0] == adaptive[2][:, 0]).all()
    forced = {**inputs, "head_caps": np.full((1, L), 2, np.int64), "budget_thresholds": np.ones((1, L), np.float32)}
    assert (run(router_floor_export(model, 2), forced)[1] == 2).all()  # as the benchmark forces k


# (batch, seq, caps (batch, L)) for each path the adaptive graph's Ifs pick in every layer
RULE_CASES = {"shared": (1, 6, [[2, 3, 1]]), "pairs": (3, PAIRS_MIN_SEQ, [[3, 1, 1], [1, 2, 2], [2, 4, 3]]),
              "packed": (3, 6, [[3, 1, 1], [1, 2, 2], [2, 4, 3]])}


@pytest.mark.parametrize("path", RULE_CASES)
def test_one_path_graph_is_the_adaptive_graph_where_the_rule_picks_its_path(path: str) -> None:
    batch, seq, caps = RULE_CASES[path]
    caps_array = np.asarray(caps)
    assert {rule_path(batch, seq, int(c.max()), int(c.sum()), H) for c in caps_array.T} == {path}
    model = tiny_model()
    inputs = feeds(batch, seq, caps_array)
    one, adaptive = run(one_path_export(model, path), inputs), run(export(model, AdaptiveExport()), inputs)
    np.testing.assert_allclose(one[0], adaptive[0], atol=1e-5, rtol=0)
    assert (one[1] == adaptive[1]).all() and (one[2] == adaptive[2]).all()
    assert not any(n.op_type == "If" for n in one_path_export(model, path).graph.node)


def test_one_path_export_refuses_an_unknown_path() -> None:
    with pytest.raises(BfexportError, match="path must be one of shared, pairs, packed"):
        one_path_export(tiny_model(), "fastest")
