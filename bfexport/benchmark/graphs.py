"""The graphs a run times, exported and checked: every flavor and the dense baselines for a full
run, the model as it serves beside a plain dense export for a quick one; and the feeds and
sessions they run with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from bfexport.benchmark.baselines import ATTENTION_MODES, attention_op_export, ort_optimize
from bfexport.benchmark.hf_peer import hf_available, hf_graphs
from bfexport.benchmark.models import BenchModel
from bfexport.benchmark.settings import FUSION_MODES
from bfexport.errors import BfexportError
from bfexport.flavors import AdaptiveExport, DenseExport, ExportConfig, MaskedExport, StaticExport
from bfexport.model import BudgetFormerConfig
from bfexport.names import ATTENTION_MASK, BUDGET_THRESHOLDS, HEAD_CAPS, INPUT_IDS, LOGITS
from converters import export
from converters.onnx.rebuild import float_type

FLAVOR_OPSET = 23  # the exporters' fastest attention on ONNX Runtime CPU (one Attention node)


@dataclass
class Graph:
    """One exported graph to time."""

    variant: str
    kind: type[ExportConfig]  # its flavor
    payload: bytes
    k: int | None = None  # static: its fixed k
    peer: bool = False  # the Hugging Face peer: never the dense reference nor the static row
    as_exported: bool = False  # quick run: timed with the file's own default budgets
    budget_rows: dict[str, np.ndarray] = field(default_factory=dict)  # as_exported: required inputs' default row


def cpu_session(payload: bytes, threads: int) -> Any:
    """A CPU session with bfexport's options (idle sessions stop spinning, see session_options)."""
    import onnxruntime as ort

    from bfexport.runtime import session_options

    return ort.InferenceSession(payload, session_options(threads), providers=["CPUExecutionProvider"])


def token_feeds(config: BudgetFormerConfig, batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
    """Random token ids, no padding: values change no timing."""
    rng = np.random.default_rng(seed)
    return {INPUT_IDS: rng.integers(1, config.vocab_size, size=(batch, seq), dtype=np.int64),
            ATTENTION_MASK: np.ones((batch, seq), dtype=np.int64)}


def budget_feeds(config: BudgetFormerConfig, base: dict[str, np.ndarray], caps: np.ndarray) -> dict[str, np.ndarray]:
    """thresholds 1.0 (k = H before the cap) and caps: every sample runs exactly its cap."""
    return {**base, BUDGET_THRESHOLDS: np.ones((1, config.n_layers), dtype=np.float32),
            HEAD_CAPS: np.ascontiguousarray(caps, dtype=np.int64)}


def _parity_feeds(config: BudgetFormerConfig) -> dict[str, np.ndarray]:
    seq = min(config.max_length, 48)
    feeds = token_feeds(config, 2, seq, seed=12345)
    feeds[ATTENTION_MASK][1, seq // 2:] = 0  # one padded row: masks must agree too
    return feeds


def _model_info(bench: BenchModel, fusions: str, dense_variants: list[str]) -> dict[str, Any]:
    """What a run records of one model: name, source, shape, fusions; dense variants, optimizer
    ops and notes as the graphs are built."""
    cfg = bench.model.config
    return {"name": bench.name, "source": bench.source, "d_model": cfg.d_model, "n_heads": cfg.n_heads,
            "n_layers": cfg.n_layers, "d_ff": cfg.d_ff, "max_length": cfg.max_length, "fusions": fusions,
            "dense_variants": dense_variants, "optimizer": {}, "notes": []}


def prepare_graphs(bench: BenchModel, ks: Sequence[int], fusions: str = "dense",
                   peers: bool = True) -> tuple[list[Graph], dict[str, Any]]:
    """Every graph to time for one model, checked against its unfused twin; plus what was built.

    fusions: "dense" = the transformers optimizer runs on the dense graphs only (the head-
    skipping graphs are timed as bfexport exports them); "all" = on every graph; "none" = on none.
    peers: also the Hugging Face peer (hf_peer), when transformers is installed.
    """
    if fusions not in FUSION_MODES:
        raise BfexportError(f"fusions must be one of {', '.join(FUSION_MODES)}, got {fusions!r}")
    model, cfg = bench.model, bench.model.config
    info = _model_info(bench, fusions, dense_variants=[])
    plain = export(model, DenseExport())
    candidates: list[tuple[str, type[ExportConfig], onnx.ModelProto, int | None]] = [
        ("dense", DenseExport, plain, None)]
    for mode in ATTENTION_MODES:
        try:
            candidates.append((f"dense-{mode}", DenseExport, attention_op_export(model, mode), None))
        except Exception as e:  # an op this onnx/onnxruntime cannot build: time the others
            info["notes"].append(f"dense-{mode} not built: {type(e).__name__}: {e}")
    opset = FLAVOR_OPSET
    candidates.append(("masked", MaskedExport, export(model, MaskedExport(opset=opset)), None))
    k: int | None  # a static k here, then each candidate's (None unless static) below
    for k in ks:
        heads = [list(range(k))] * cfg.n_layers
        candidates.append(("static", StaticExport, export(model, StaticExport(opset=opset, heads=heads)), k))
    candidates.append(("adaptive", AdaptiveExport, export(model, AdaptiveExport(opset=opset)), None))
    info["notes"].append(f"masked, static and adaptive exported at opset {opset} (attention as one Attention node)")

    feeds = _parity_feeds(cfg)
    budget = budget_feeds(cfg, feeds, np.full((1, cfg.n_layers), max(1, cfg.n_heads // 2)))
    graphs: list[Graph] = []
    reference = cpu_session(plain.SerializeToString(), 1).run([LOGITS], feeds)[0]
    for variant, kind, proto, k in candidates:
        feed = budget if kind.routed else feeds
        payload = proto.SerializeToString()
        logits = cpu_session(payload, 1).run([LOGITS], feed)[0]
        if kind is DenseExport and not _close(logits, reference):
            info["notes"].append(f"{variant} dropped: logits differ from the plain dense export by "
                                 f"{np.abs(logits - reference).max():.2e}")
            continue
        fused = None
        if fusions == "all" or (fusions != "none" and kind is DenseExport):  # "dense": dense graphs only
            fused = _fused_payload(proto, cfg, feed, logits, f"{variant}@{k}" if k is not None else variant, info)
        if fused is None or proto is plain:  # the plain dense stays too: it shows what fusing buys
            graphs.append(Graph(variant, kind, payload, k))
        if fused is not None:
            graphs.append(Graph(f"{variant}+ortopt", kind, fused, k))
    plain_fusion = info["optimizer"].get("dense")
    if plain_fusion is not None and not {"Attention", "MultiHeadAttention"} & set(plain_fusion):
        info["notes"].append("transformers optimizer did not fuse attention in the plain dense export "
                             "(its BERT patterns need separate Q/K/V MatMuls and its own mask path); "
                             "dense-mha is the fused com.microsoft.Attention built directly")
    info["dense_variants"] = [g.variant for g in graphs if g.kind is DenseExport]
    if peers:
        graphs += _peer_graphs(cfg, ks, info)
    return graphs, info


def _peer_graphs(cfg: BudgetFormerConfig, ks: Sequence[int], info: dict[str, Any]) -> list[Graph]:
    """The Hugging Face peer's graphs (dense, and pruned to each k < H), or none, with a note why."""
    if not hf_available():
        info["notes"].append("Hugging Face peer not timed: transformers is not installed (the hf extra)")
        return []
    try:
        built = hf_graphs(cfg, ks)
    except Exception as e:  # an exporter this torch/transformers pair cannot run: time the rest
        info["notes"].append(f"Hugging Face peer not built: {type(e).__name__}: {e}")
        return []
    info["notes"].append("hf-dense / hf-pruned: transformers BertForSequenceClassification of this shape, random "
                         "weights, prune_heads keeping heads 0..k-1, exported by torch.onnx (opset 17)")
    return [Graph(variant, DenseExport if k is None else StaticExport, payload, k, peer=True)
            for variant, k, payload in built]


def quick_graphs(bench: BenchModel) -> tuple[list[Graph], dict[str, Any]]:
    """The model as it serves (bench.exported as is, else its default export: adaptive, or dense
    for a dense-trained model) and, unless that is dense, a dense export of the same weights."""
    model, cfg, exported = bench.model, bench.model.config, bench.exported
    info = _model_info(bench, "none", dense_variants=["dense"])
    rows: dict[str, np.ndarray] = {}
    if exported is not None:
        kind, payload = exported.kind, exported.proto.SerializeToString()
        fp16 = float_type(exported) == onnx.TensorProto.FLOAT16
        # a file whose budgets are required inputs (`bfexport deploy` with batching) gets its default rows
        stored = {i.name for i in exported.proto.graph.initializer}
        required = {i.name for i in exported.proto.graph.input} - stored
        defaults: dict[str, np.ndarray] = {
            BUDGET_THRESHOLDS: np.asarray([exported.default_thresholds], dtype=np.float32),
            HEAD_CAPS: np.asarray([exported.default_caps], dtype=np.int64)}
        rows = {name: row for name, row in defaults.items() if name in required}
    else:
        kind, fp16 = (AdaptiveExport if cfg.adaptive else DenseExport), False
        payload = export(model, kind()).SerializeToString()
    if kind.custom_op:
        raise BfexportError(f"{bench.name}: bench times ONNX Runtime graphs; a {kind.flavor} file runs on TensorRT "
                            "(bench the adaptive export of the same model)")
    graphs = [Graph(f"{kind.flavor} (this model)", kind, payload, as_exported=True, budget_rows=rows)]
    if kind is DenseExport:
        info["dense_variants"] = [graphs[0].variant]
    else:
        graphs.insert(0, Graph("dense", DenseExport, export(model, DenseExport(fp16=fp16)).SerializeToString()))
        info["notes"].append(f"{graphs[1].variant}: its own default budgets on random token ids; dense: a dense "
                             "export of the same weights" + (" (fp16 like the file)" if fp16 else ""))
    return graphs, info


def _fused_payload(proto: onnx.ModelProto, cfg: BudgetFormerConfig, feed: dict[str, np.ndarray],
                   logits: np.ndarray, key: str, info: dict[str, Any]) -> bytes | None:
    """The optimizer's version of proto if it fused something and left the logits alone, else None
    (with the reason in info["notes"]); info["optimizer"][key] lists the ops it added."""
    try:
        fused, added, printed = ort_optimize(proto, cfg)
        payload: bytes = fused.SerializeToString()
        out = cpu_session(payload, 1).run([LOGITS], feed)[0]
    except Exception as e:  # optimizer missing or failing: time the graph as exported
        info["notes"].append(f"transformers optimizer failed on {key}: {type(e).__name__}: {e}")
        return None
    if printed:
        info["notes"].append(f"transformers optimizer on {key} printed: {printed}")
    info["optimizer"][key] = added
    if not added:
        info["notes"].append(f"transformers optimizer fused nothing in {key}")
        return None
    if not _close(out, logits):
        moved = np.abs(out - logits).max()
        info["notes"].append(f"{key}+ortopt dropped: the optimizer moved the logits by {moved:.2e}")
        return None
    return payload


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-3, atol=1e-4))
