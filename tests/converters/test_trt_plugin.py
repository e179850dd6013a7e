"""The TensorRT path without TensorRT: the trt-plugin ONNX flavor runs in ONNX Runtime with the
Python custom op and matches PyTorch; the plugin's shape/dtype rules; PTX for sm_90 from the
Triton kernel; and the engine builder's helpers and its error when TensorRT is missing."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from bfexport.errors import BfexportError
from bfexport.names import ONNX_DOMAIN, PLUGIN_NAME
from converters import FLAVORS, TrtPluginExport, export, save_onnx
from converters import tensorrt as trt_builder
from converters.tensorrt.plugin import (
    INPUTS,
    attributes,
    autotune_types,
    kernel_constexprs,
    kernel_signature,
    launch_grid,
    output_dtype,
    output_shape,
    plugin_nodes,
)
from tests.factories import tiny_model

SHAPES = [("B", "S", 32), ("B", "S"), ("B", 4), (4, 32, 24), (4, 24), (4, 8, 32), (32,)]


# ---- the exported graph -----------------------------------------------------------------
def test_each_attention_block_is_one_custom_node() -> None:
    model = tiny_model()
    cfg = model.config
    proto = export(model, TrtPluginExport())
    nodes = plugin_nodes(proto)
    assert len(nodes) == cfg.n_layers
    for node in nodes:
        assert node.domain == ONNX_DOMAIN and len(node.input) == len(INPUTS) and len(node.output) == 1
        assert attributes(node) == {"plugin_namespace": b"bfexport", "plugin_version": b"1", "aot": 1,
                                    "num_heads": cfg.n_heads, "head_dim": cfg.d_head}
    assert {(o.domain, o.version) for o in proto.opset_import} == {("", 17), (ONNX_DOMAIN, 1)}
    custom = {n.op_type for n in proto.graph.node if n.domain}
    assert custom == {PLUGIN_NAME}  # every other op is standard ONNX
    # no per-head weight gathers or attention matmuls outside the node: the weights feed only it
    consumers = {i for n in proto.graph.node if n.op_type != PLUGIN_NAME for i in n.input}
    assert not [i for i in consumers if i.endswith(("qkv_weight", "out_weight"))]
    # the router still runs in the graph and feeds the node its heads, as int32
    producers = {o: n for n in proto.graph.node for o in n.output}
    heads = producers[nodes[0].input[2]]
    assert heads.op_type == "Cast" and attributes(heads)["to"] == onnx.TensorProto.INT32
    assert any(n.op_type == "TopK" for n in proto.graph.node)
    assert [o.name for o in proto.graph.output] == ["logits", "head_counts", "selected_heads"]


def test_fp16_graph_casts_the_float32_node_output_back() -> None:
    proto = export(tiny_model(), TrtPluginExport(fp16=True, opset=18))
    producers = {o: n for n in proto.graph.node for o in n.output}
    consumers = {i: n for n in proto.graph.node for i in n.input}
    for node in plugin_nodes(proto):
        assert consumers[node.output[0]].op_type == "Cast"
        assert producers[node.input[0]].op_type == "LayerNormalization"
    inits = {i.name: i.data_type for i in proto.graph.initializer}
    assert inits["blocks.0.attn.qkv_weight"] == onnx.TensorProto.FLOAT16


def test_export_refuses_bad_opset_and_dense_checkpoints() -> None:
    with pytest.raises(BfexportError, match="opset"):
        export(tiny_model(), TrtPluginExport(opset=12))
    with pytest.raises(BfexportError, match="dense"):
        export(tiny_model(adaptive=False), TrtPluginExport())


def test_registered_flavor_exports_the_plugin_graph() -> None:
    """--flavor trt-plugin maps to the config the registry dispatches to the plugin writer."""
    assert FLAVORS["trt-plugin"] is TrtPluginExport
    assert len(plugin_nodes(export(tiny_model(), TrtPluginExport()))) == tiny_model().config.n_layers


# ---- ONNX Runtime with the custom op: parity with PyTorch -----------------------------------
@pytest.fixture(scope="module")
def ort_session_and_model(tmp_path_factory):
    pytest.importorskip("onnxruntime_extensions")
    from bfexport import ort_custom_ops

    model = tiny_model(vocab_size=120)
    path = save_onnx(export(model, TrtPluginExport()), tmp_path_factory.mktemp("trt") / "model.onnx")
    return ort_custom_ops.session(path), model


def batch(seed: int, rows: int = 6, seq: int = 14) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 120, (rows, seq)).astype(np.int64)
    lengths = rng.integers(1, seq + 1, rows)
    lengths[0] = seq
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    return ids * mask, mask


def compare(session, model, ids, mask, thresholds=None, caps=None) -> np.ndarray:
    n_layers = model.config.n_layers
    feeds = {"input_ids": ids, "attention_mask": mask}
    if thresholds is not None:
        feeds["budget_thresholds"] = np.asarray(thresholds, np.float32).reshape(-1, n_layers)
    if caps is not None:
        feeds["head_caps"] = np.asarray(caps, np.int64).reshape(-1, n_layers)
    logits, counts, selected = session.run(None, feeds)
    ref = model.predict(torch.from_numpy(ids), torch.from_numpy(mask),
                        thresholds=None if thresholds is None else torch.as_tensor(feeds["budget_thresholds"]),
                        caps=None if caps is None else torch.as_tensor(feeds["head_caps"]))
    assert np.abs(logits - ref.logits.numpy()).max() <= 1e-4
    assert (counts == ref.head_counts.numpy()).all()
    assert (selected == ref.selected_heads(model.config.n_heads).numpy()).all()
    return counts


def test_ort_custom_op_matches_pytorch_with_default_budgets(ort_session_and_model) -> None:
    session, model = ort_session_and_model
    for seed in range(3):
        compare(session, model, *batch(seed))
    compare(session, model, *batch(9, rows=1, seq=1))  # one token


def test_ort_custom_op_matches_pytorch_for_every_k(ort_session_and_model) -> None:
    session, model = ort_session_and_model
    L, H = model.config.n_layers, model.config.n_heads
    ids, mask = batch(3)
    for k in range(1, H + 1):
        counts = compare(session, model, ids, mask, thresholds=[1.0] * L, caps=[k] * L)
        assert (counts == k).all()


def test_ort_custom_op_matches_pytorch_with_per_sample_budgets(ort_session_and_model) -> None:
    session, model = ort_session_and_model
    L = model.config.n_layers
    ids, mask = batch(4, rows=8)
    thresholds = np.random.default_rng(0).uniform(0.05, 1.0, (8, L))
    counts = compare(session, model, ids, mask, thresholds=thresholds)
    assert len({tuple(c) for c in counts}) > 1  # samples of one batch ran different budgets


# ---- the plugin's shape / dtype rules and kernel ABI (plain Python) --------------------------
def test_output_shape_checks_inputs_against_each_other() -> None:
    assert output_shape(SHAPES) == ("B", "S", 32)
    assert output_shape([(2, 7, 32), (2, 7), (2, 4), (4, 32, 24), (4, 24), (4, 8, 32), (32,)]) == (2, 7, 32)
    for i, bad in [(1, (2, 7)), (3, (4, 31, 24)), (4, (4, 23)), (5, (4, 8, 31)), (6, (31,)), (2, ("B", 5))]:
        shapes = list(SHAPES) if i != 1 else [(3, 9, 32)] + list(SHAPES[1:])
        shapes[i] = bad
        with pytest.raises(ValueError):
            output_shape(shapes)
    with pytest.raises(ValueError, match="rank"):
        output_shape([("B", "S")] + SHAPES[1:])
    with pytest.raises(ValueError, match="7 inputs"):
        output_shape(SHAPES[:6])


def test_output_dtype_is_float32_for_either_float_type() -> None:
    for t in ("float32", "float16"):
        assert output_dtype([t, t, "int32", t, t, t, t]) == "float32"
    with pytest.raises(ValueError, match="heads"):
        output_dtype(["float32", "float32", "int64"] + ["float32"] * 4)
    with pytest.raises(ValueError, match="mask"):
        output_dtype(["float16", "float32", "int32"] + ["float16"] * 4)
    with pytest.raises(ValueError, match="hidden"):
        output_dtype(["bfloat16", "bfloat16", "int32"] + ["bfloat16"] * 4)


def test_kernel_abi_is_inputs_then_scalars_then_outputs() -> None:
    sig = kernel_signature("float16")
    kinds = ["ptr" if t.startswith("*") else "scalar" for t in sig.values()]
    assert kinds == ["ptr"] * 7 + ["scalar", "ptr"]
    assert sig["heads_ptr"] == "*i32" and sig["seq_len"] == "i32" and sig["out_ptr"] == "*fp32"
    assert autotune_types().count(",") == len(INPUTS)  # one entry per input and the output
    assert [len(p.split("|")) for p in autotune_types().split(",")] == [2, 2, 1, 2, 2, 2, 2, 1]
    c = kernel_constexprs(12, 64)
    assert (c["D"], c["DH"], c["KMAX"], c["DH_PAD"]) == (768, 64, 12, 64)
    assert launch_grid(8, 130, c["BLOCK_M"]) == (-(-130 // c["BLOCK_M"]), 8, 1)
    with pytest.raises(ValueError):
        kernel_signature("bfloat16")


def test_ptx_for_sm90_from_the_fused_kernel() -> None:
    """triton.compile to PTX needs no GPU; the entry's parameters follow TensorRT's AOT order."""
    pytest.importorskip("triton")
    from converters.kernels.budgeted_attention import interpreting
    from converters.tensorrt.plugin import MAX_STATIC_SHARED, compile_ptx

    if interpreting():
        pytest.skip("TRITON_INTERPRET=1 in this process: cannot compile")
    compiled = compile_ptx("float16", 4, 8)
    assert ".target sm_90" in compiled.ptx and compiled.name == "_fused_kernel"
    entry = re.search(r"\.entry _fused_kernel\((.*?)\)", compiled.ptx, re.S).group(1)
    params = [p.strip() for p in entry.split(",")]
    assert all(".u64 .ptr" in p for p in params[:7]) and ".u32" in params[7] and ".u64 .ptr" in params[8]
    assert len(params) in (9, 10, 11)  # Triton may append its (unused, zero-sized) scratch pointers
    assert 0 < compiled.shared <= MAX_STATIC_SHARED and compiled.num_warps == 4


@pytest.mark.slow
def test_ptx_for_a_bert_base_sized_model_in_both_dtypes() -> None:
    pytest.importorskip("triton")
    from converters.tensorrt.plugin import compile_ptx

    for dtype in ("float32", "float16"):
        compiled = compile_ptx(dtype, 12, 64, ptx_version=85)
        assert ".version 8.5" in compiled.ptx and ".target sm_90" in compiled.ptx


# ---- the engine builder without TensorRT ------------------------------------------------------
@pytest.fixture()
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", None)


def test_missing_tensorrt_is_a_clear_error(no_tensorrt, tmp_path: Path) -> None:
    message = "TensorRT is not installed: pip install 'bfexport[tensorrt]' on a machine with an NVIDIA GPU"
    with pytest.raises(BfexportError, match=re.escape(message)):
        trt_builder.import_tensorrt()
    with pytest.raises(BfexportError, match=re.escape(message)):
        trt_builder.build_engine(tmp_path / "model.onnx", tmp_path / "model.plan")
    from converters.tensorrt.plugin import register_plugin

    with pytest.raises(BfexportError, match="TensorRT >= 10.9"):
        register_plugin()
    assert not list(tmp_path.iterdir())  # nothing written


def test_profile_shapes() -> None:
    p = trt_builder.Profile(1, 8, 32, 1, 128, 256)
    shapes = trt_builder.profile_shapes(p, 4, max_length=256)
    assert shapes["input_ids"] == ((1, 1), (8, 128), (32, 256)) == shapes["attention_mask"]
    assert shapes["budget_thresholds"] == ((1, 4), (1, 4), (32, 4)) == shapes["head_caps"]
    assert set(trt_builder.profile_shapes(p, 4, inputs=("input_ids", "attention_mask"))) == {"input_ids",
                                                                                            "attention_mask"}
    for bad in (trt_builder.Profile(0, 8, 32), trt_builder.Profile(1, 64, 32), trt_builder.Profile(1, 8, 32, 4, 2, 8)):
        with pytest.raises(BfexportError, match="min <= opt <= max"):
            trt_builder.profile_shapes(bad, 4)
    with pytest.raises(BfexportError, match="max_length"):
        trt_builder.profile_shapes(trt_builder.Profile(max_seq=512), 4, max_length=256)


def test_engine_metadata(tmp_path: Path) -> None:
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"abc")
    p = trt_builder.Profile()
    meta = trt_builder.engine_metadata(onnx_path, p, trt_builder.profile_shapes(p, 2), flavor="trt-plugin",
                                       plugins=["bfexport::BudgetedAttention"], tensorrt_version="10.9", device=None)
    assert meta["onnx_sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert meta["shapes"]["input_ids"] == [[1, 1], [8, 128], [32, 256]] and meta["strongly_typed"]
    assert trt_builder.metadata_path(tmp_path / "e.plan") == tmp_path / "e.plan.json"
