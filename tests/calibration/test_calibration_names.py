"""The graph names calibration reads exist in every routed export: a rename in the exporter
must fail here, not silently turn off the calibration path cache (the router tails)."""

from __future__ import annotations

import pytest

from bfexport.flavors import FLAVORS
from bfexport.names import BUDGET_INPUTS, OUTPUTS, TOKEN_INPUTS, router_tail
from calibration.evaluate import _with_tail_outputs
from converters import AdaptiveExport, MaskedExport, TrtPluginExport, export
from tests.factories import tiny_model

ROUTED = [config for config in FLAVORS.values() if config.routed]


def test_the_routed_flavors_are_the_ones_calibration_takes() -> None:
    assert set(ROUTED) == {AdaptiveExport, MaskedExport, TrtPluginExport}


@pytest.mark.parametrize("config", ROUTED, ids=lambda c: c.flavor)
def test_names_calibration_reads_are_in_the_graph(config: type) -> None:
    model = tiny_model()
    proto = export(model, config())
    produced = {name: node.op_type for node in proto.graph.node for name in node.output}
    assert [i.name for i in proto.graph.input] == [*TOKEN_INPUTS, *BUDGET_INPUTS]
    assert [o.name for o in proto.graph.output] == list(OUTPUTS)
    tails = [router_tail(layer) for layer in range(model.config.n_layers)]
    assert {produced.get(t) for t in tails} == {"CumSum"}
    _, found, _ = _with_tail_outputs(proto, model.config.n_layers)
    assert found == tails  # None would mean the evaluator runs without its path cache
