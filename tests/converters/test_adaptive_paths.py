"""The adaptive graph's attention paths (converters/onnx/adaptive.py): each runs for the shapes
it is chosen for, computes only the heads the router selected, and matches PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from bfexport.benchmark.decomposition import rule_path
from bfexport.checkpoint import load_checkpoint
from bfexport.runtime import session_options
from converters import AdaptiveExport, export
from converters.onnx.adaptive import PAIRS_MIN_SEQ
from tests.factories import tiny_model

H, L = 4, 3  # tiny_model's heads and layers
SHORT, LONG = 6, PAIRS_MIN_SEQ  # tiny_model's max_length is 32


def feeds(batch: int, seq: int, caps: list[list[int]]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(batch * 100 + seq)
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[-1, seq // 2:] = 0  # a padded row: the key bias must follow each sample to its pairs
    return {"input_ids": rng.integers(0, 100, (batch, seq)).astype(np.int64), "attention_mask": mask,
            "head_caps": np.asarray(caps, dtype=np.int64), "budget_thresholds": np.ones((1, L), np.float32)}


def ran(proto, inputs: dict[str, np.ndarray], tmp_path: Path) -> dict[str, list[int]]:
    """Node name -> output shape of every node ONNX Runtime ran (its profile), subgraphs included."""
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    session.run(None, inputs)
    events = json.loads(Path(session.end_profiling()).read_text())
    return {e["name"].removesuffix("_kernel_time"): next(iter(e["args"]["output_type_shape"][0].values()))
            for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
            and e["args"].get("output_type_shape")}


# (batch, seq, head caps per sample) -> the path layer 0 takes and the heads its Q/K/V projection has
CASES = {
    "shared: batch 1, k < H": (1, SHORT, [[2, 3, 1]], "shared", 2),
    "packed: batch 1, every head": (1, LONG, [[H, H, H]], "packed", H),
    "pairs: batch > 1, long": (3, LONG, [[3, 1, 1], [1, 2, 2], [2, 4, 4]], "pairs", 3 + 1 + 2),
    "packed: batch > 1, short": (3, SHORT, [[3, 1, 1], [1, 2, 2], [2, 4, 4]], "packed", H),
    "packed: batch > 1, long, every head": (2, LONG, [[H, 1, 1], [H, 2, 2]], "packed", H),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_path_runs_for_its_shapes_and_computes_only_the_selected_heads(case, tmp_path: Path) -> None:
    batch, seq, caps, path, heads = case
    model = tiny_model()
    shapes = ran(export(model, AdaptiveExport()), feeds(batch, seq, caps), tmp_path)
    dh3 = 3 * model.config.d_head
    taken = {p for p in ("shared", "pairs", "packed") if f"blocks.0.attn.{p}.qkv" in shapes}
    assert taken == {path}
    column = np.asarray(caps)[:, 0]
    assert rule_path(batch, seq, int(column.max()), int(column.sum()), H) == path  # the benchmark's copy of the rule
    qkv = shapes[f"blocks.0.attn.{path}.qkv"]
    expected = {"shared": [1, heads, seq, dh3], "pairs": [heads, seq, dh3], "packed": [batch, seq, heads * dh3]}
    assert qkv == expected[path]  # pairs: sum of k pairs, not batch * max k


@pytest.mark.parametrize("opset", [17, 23])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_each_path_matches_pytorch(case, opset: int) -> None:
    batch, seq, caps, _, _ = case
    model = tiny_model()
    inputs = feeds(batch, seq, caps)
    session = ort.InferenceSession(export(model, AdaptiveExport(opset=opset)).SerializeToString())
    logits, counts, selected = session.run(["logits", "head_counts", "selected_heads"], inputs)
    ref = model.predict(torch.from_numpy(inputs["input_ids"]), torch.from_numpy(inputs["attention_mask"]),
                        caps=torch.tensor(caps).expand(batch, L), thresholds=[1.0] * L)
    np.testing.assert_allclose(logits, ref.logits.numpy(), atol=1e-4, rtol=0)
    assert (counts == ref.head_counts.numpy()).all()
    assert (selected == ref.selected_heads(H).numpy()).all()


def test_pairs_path_is_deterministic_with_several_threads() -> None:
    """Pairs summed into their samples by ScatterND's add reduction lost updates when ONNX Runtime
    ran it on several threads (a live Triton check caught a logit 0.39 off); the sum is now a plain
    scatter to (sample, slot) and a ReduceSum. Shipped-size shapes, so the work is split over threads."""
    model = load_checkpoint("examples/debian-sections/checkpoint")
    H8, L4 = model.config.n_heads, model.config.n_layers
    rng = np.random.default_rng(0)
    batch, seq = 8, 200
    inputs = {"input_ids": rng.integers(5, 1000, (batch, seq)).astype(np.int64),
              "attention_mask": np.ones((batch, seq), dtype=np.int64),
              "head_caps": rng.integers(1, H8, (batch, L4)).astype(np.int64),  # k < H: the pairs path
              "budget_thresholds": np.ones((batch, L4), np.float32)}
    session = ort.InferenceSession(export(model, AdaptiveExport()).SerializeToString(), session_options(4))
    runs = [session.run(["logits"], inputs)[0] for _ in range(30)]
    assert all(np.array_equal(r, runs[0]) for r in runs)
    ref = model.predict(torch.from_numpy(inputs["input_ids"]), torch.from_numpy(inputs["attention_mask"]),
                        caps=torch.from_numpy(inputs["head_caps"]), thresholds=[1.0] * L4)
    np.testing.assert_allclose(runs[0], ref.logits.numpy(), atol=1e-4, rtol=0)


def test_fp16_pairs_path_runs_close_to_pytorch() -> None:
    """The fp16 graph's pairs path (scatter and sum in float16) stays close to PyTorch."""
    model = tiny_model()
    batch, seq, caps, _, _ = CASES["pairs: batch > 1, long"]
    inputs = feeds(batch, seq, caps)
    session = ort.InferenceSession(export(model, AdaptiveExport(fp16=True)).SerializeToString())
    logits = session.run(["logits"], inputs)[0]
    ref = model.predict(torch.from_numpy(inputs["input_ids"]), torch.from_numpy(inputs["attention_mask"]),
                        caps=torch.tensor(caps), thresholds=[1.0] * L)
    np.testing.assert_allclose(logits, ref.logits.numpy(), atol=2e-2, rtol=0)


@pytest.mark.parametrize("tau", [1e-30, 1e-7, 0.3, 1 - 1e-7, 1.0])
def test_router_k_matches_pytorch_at_threshold_extremes(tau: float) -> None:
    """The graph counts k over the router's whole tail, max(count, 1), where PyTorch counts the
    tail past its first entry and adds 1: the same k, also when tau is so small that 1 - tau
    rounds to 1 and no tail entry clears it."""
    model = tiny_model()
    batch, seq = 3, PAIRS_MIN_SEQ
    inputs = feeds(batch, seq, [[H] * L] * batch)
    inputs["budget_thresholds"] = np.full((1, L), tau, np.float32)
    session = ort.InferenceSession(export(model, AdaptiveExport()).SerializeToString())
    counts, selected = session.run(["head_counts", "selected_heads"], inputs)
    ref = model.predict(torch.from_numpy(inputs["input_ids"]), torch.from_numpy(inputs["attention_mask"]),
                        thresholds=[tau] * L)
    assert (counts == ref.head_counts.numpy()).all()
    assert (selected == ref.selected_heads(H).numpy()).all()


def test_the_packed_paths_dense_weights_are_made_in_its_own_branch() -> None:
    """ONNX Runtime folds the Transpose/Reshape of the per-head weights into constants of the
    graph they are written in, and pre-packs a MatMul's constant weight from its own graph (or
    its parent): written in the outer graph, two Ifs above the packed path, they were packed
    again on every call (benchmarks/adaptive_overhead.py: +40% at wide batch 8 seq 1)."""
    proto = export(tiny_model(), AdaptiveExport())
    assert not [n.name for n in proto.graph.node if "dense" in n.name]
    strategy = next(n for n in proto.graph.node if n.name == "blocks.0.attn.strategy")
    else_branch = next(a.g for a in strategy.attribute if a.name == "else_branch")
    pairs_or_packed = next(n for n in else_branch.node if n.name == "blocks.0.attn.pairs_or_packed")
    packed = next(a.g for a in pairs_or_packed.attribute if a.name == "else_branch")
    made = {n.name for n in packed.node}
    assert {"blocks.0.attn.qkv_dense", "blocks.0.attn.out_dense"} <= made
