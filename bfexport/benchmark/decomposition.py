"""Benchmark-only graphs that split the adaptive graph's time over static pruning into its parts.

Not flavors: nothing outside the benchmark exports them (benchmarks/adaptive_overhead.py times them).

  router floor  the static graph (fixed heads 0..k-1) with the router computed in every layer,
                its head counts and head sets as outputs: what any in-graph router adds to static
                pruning when choosing a path and gathering weights cost nothing. Its logits are
                the static graph's; its head outputs are its router's on static attention's
                hidden states (the benchmark forces k with caps, so the work is the same).
  one path      the adaptive graph with one attention path written without the Ifs that choose
                it: its time against the adaptive graph's is what choosing per call costs.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

from bfexport.errors import BfexportError
from bfexport.flavors import AdaptiveExport, StaticExport
from bfexport.model import BudgetFormerForSequenceClassification
from converters.onnx.adaptive import PAIRS_MIN_SEQ, AdaptiveWriter
from converters.onnx.fixed import StaticWriter
from converters.onnx.router import RoutedWriter, Selection

PATHS = ("shared", "pairs", "packed")


class _RouterFloorWriter(RoutedWriter, StaticWriter):
    """The router's inputs, ops and outputs (RoutedWriter) around static attention (StaticWriter)."""

    def attention(self, layer: int, h: str, key_bias: str, sel: Selection) -> str:
        return self.fixed_attention(layer, h, key_bias, self.heads(layer))


class _OnePathWriter(AdaptiveWriter):
    def __init__(self, model: BudgetFormerForSequenceClassification, config: AdaptiveExport, path: str) -> None:
        super().__init__(model, config)
        self.path = path

    def choose(self, p: str, sel: Selection, kmax: str, limits: tuple[str, str],
               paths: dict[str, Callable[[], str]]) -> str:
        return paths[self.path]()


def router_floor_export(model: BudgetFormerForSequenceClassification, k: int, opset: int = 23) -> onnx.ModelProto:
    """Static attention over heads 0..k-1 in every layer, plus the router and its outputs."""
    config = StaticExport(opset=opset, heads=[list(range(k))] * model.config.n_layers)
    proto = _RouterFloorWriter(model, config).build()
    onnx.checker.check_model(proto, full_check=True)
    return proto


def one_path_export(model: BudgetFormerForSequenceClassification, path: str, opset: int = 23) -> onnx.ModelProto:
    """The adaptive graph with `path` (shared, pairs or packed) in every layer and no If."""
    if path not in PATHS:
        raise BfexportError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
    proto = _OnePathWriter(model, AdaptiveExport(opset=opset), path).build()
    onnx.checker.check_model(proto, full_check=True)
    return proto


def rule_path(batch: int, seq: int, kmax: int, pairs: int, n_heads: int) -> str:
    """The path one layer's Ifs pick, from the batch's largest k (kmax) and its number of selected
    (sample, head) pairs: a copy of the rule in converters/onnx/adaptive.py, which
    tests/converters/test_adaptive_paths.py checks against the paths ONNX Runtime runs."""
    if batch == 1 and kmax < n_heads:
        return "shared"
    if batch > 1 and seq >= PAIRS_MIN_SEQ and pairs < batch * n_heads:
        return "pairs"
    return "packed"
