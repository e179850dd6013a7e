"""The model's contract: the selection rule, real head skipping, padding, and config I/O."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bfexport.errors import BfexportError
from bfexport.model import BudgetFormerConfig, BudgetFormerForSequenceClassification, Router
from bfexport.train import ExploreExploit, TrainConfig, expected_budget
from tests.factories import VARIANTS, tiny_config, tiny_model, variant_model

ARCHITECTURES = ["default", *VARIANTS]  # bfexport's own model and each variant of tests/factories.py


def _model(architecture: str) -> BudgetFormerForSequenceClassification:
    return tiny_model(vocab_size=100) if architecture == "default" else variant_model(architecture, vocab_size=100)


def brute_force_k(probs: np.ndarray, tau: float) -> int:
    cdf = np.cumsum(probs.astype(np.float64))
    return next((k + 1 for k in range(len(cdf)) if cdf[k] >= tau - 1e-12), len(cdf))


def test_budget_is_smallest_k_whose_cdf_reaches_tau() -> None:
    torch.manual_seed(0)
    logits = torch.randn(200, 6) * 2
    probs = logits.softmax(-1).numpy()
    for tau in (0.05, 0.3, 0.5, 0.77, 0.99, 1.0):
        k = Router.budget(logits, torch.tensor(tau), torch.tensor(6)).numpy()
        expected = [brute_force_k(p, tau) for p in probs]
        assert (np.abs(k - expected) == 0).mean() > 0.99  # float32 vs float64 may flip an exact tie
        assert k.min() >= 1 and k.max() <= 6


def test_raising_tau_never_lowers_k_and_caps_bound_it() -> None:
    logits = torch.randn(100, 8) * 3
    previous = torch.zeros(100, dtype=torch.long)
    for tau in np.linspace(0.01, 1.0, 25):
        k = Router.budget(logits, torch.tensor(float(tau)), torch.tensor(8))
        assert (k >= previous).all()
        previous = k
    assert (previous == 8).all()  # tau = 1 runs every head
    assert (Router.budget(logits, torch.tensor(1.0), torch.tensor(3)) == 3).all()


def test_equal_relevance_ties_go_to_the_lower_head_index() -> None:
    order = Router.rank(torch.zeros(2, 5))
    assert order.tolist() == [[0, 1, 2, 3, 4]] * 2
    assert Router.rank(torch.tensor([[1.0, 3.0, 3.0, 0.0]])).tolist() == [[1, 2, 0, 3]]


def _batch(B: int = 5, S: int = 20, vocab: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(2, vocab, (B, S))
    mask = torch.ones(B, S, dtype=torch.long)
    for b, length in enumerate([S, 11, 3, 1, 17][:B]):
        mask[b, length:] = 0
        ids[b, length:] = 0
    return ids, mask


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_inference_equals_all_heads_with_hard_gates(architecture: str) -> None:
    model = _model(architecture)
    ids, mask = _batch()
    out = model.predict(ids, mask)
    assert len(set(out.head_counts.flatten().tolist())) > 1, "fixture should vary k"

    def gate(layer, budget_logits, relevance):
        sel = out.selections[layer]
        gates = torch.zeros_like(relevance)
        for b in range(len(gates)):
            gates[b, sel.heads[b][sel.active[b]]] = 1.0
        return gates, sel

    with torch.no_grad():
        gated = model(ids, mask, gate_fn=gate)
    torch.testing.assert_close(out.logits, gated.logits, atol=1e-5, rtol=0)


def test_unselected_heads_are_not_computed() -> None:
    """Poisoning the weights of heads no sample selected leaves the output unchanged."""
    model = tiny_model(vocab_size=100)
    ids, mask = _batch()
    out = model.predict(ids, mask, caps=[1, 1, 1])
    used = {int(h) for h in out.selections[0].heads[out.selections[0].active]}
    unused = [h for h in range(4) if h not in used]
    assert unused
    with torch.no_grad():
        model.blocks[0].attn.qkv_weight[unused] = float("nan")
        model.blocks[0].attn.out_weight[unused] = float("nan")
    again = model.predict(ids, mask, caps=[1, 1, 1])
    torch.testing.assert_close(out.logits, again.logits)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_padding_does_not_change_a_samples_result(architecture: str) -> None:
    model = _model(architecture)
    ids, mask = _batch()
    batched = model.predict(ids, mask)
    for b in range(len(ids)):
        n = int(mask[b].sum())
        alone = model.predict(ids[b:b + 1, :n], mask[b:b + 1, :n])
        torch.testing.assert_close(alone.logits[0], batched.logits[b], atol=1e-5, rtol=0)
        assert alone.head_counts[0].tolist() == batched.head_counts[b].tolist()


def test_per_sample_thresholds_and_caps() -> None:
    model = tiny_model(vocab_size=100)
    ids, mask = _batch()
    low = model.predict(ids, mask, thresholds=[0.01] * 3)
    high = model.predict(ids, mask, thresholds=[1.0] * 3)
    assert (high.head_counts == 4).all()
    assert (low.head_counts <= high.head_counts).all()
    rows = torch.tensor([[1.0] * 3, [0.01] * 3, [1.0] * 3, [0.01] * 3, [1.0] * 3])
    mixed = model.predict(ids, mask, thresholds=rows)
    assert mixed.head_counts[0].tolist() == [4, 4, 4]
    assert mixed.head_counts[1].tolist() == low.head_counts[1].tolist()


@pytest.mark.parametrize("bad", [dict(thresholds=[0.0] * 3), dict(thresholds=[1.5] * 3), dict(caps=[0, 1, 1]),
                                 dict(caps=[5, 1, 1]), dict(thresholds=[0.5] * 2)])
def test_bad_budget_arguments_are_refused(bad: dict) -> None:
    model = tiny_model(vocab_size=100)
    ids, mask = _batch()
    with pytest.raises(BfexportError):
        model.predict(ids, mask, **bad)


def test_bad_batches_are_refused() -> None:
    model = tiny_model(vocab_size=100)
    ids, mask = _batch()
    mask[2] = 0
    with pytest.raises(BfexportError, match="all padding"):
        model.predict(ids, mask)
    with pytest.raises(BfexportError, match="max_length"):
        model.predict(torch.ones(1, 33, dtype=torch.long), torch.ones(1, 33, dtype=torch.long))
    with pytest.raises(BfexportError, match="vocabulary"):
        model.predict(torch.full((1, 3), 100), torch.ones(1, 3, dtype=torch.long))


def test_config_json_round_trip_and_refusals() -> None:
    config = tiny_config(budget_thresholds=[0.3, 0.5, 0.9], head_caps=[4, 2, 3])
    assert BudgetFormerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(BfexportError, match="unknown key"):
        BudgetFormerConfig.from_dict({**config.to_dict(), "n_experts": 4})
    with pytest.raises(BfexportError, match="d_model"):
        tiny_config(d_model=10**9)  # memory bomb refused before allocating
    with pytest.raises(BfexportError, match="divisible"):
        tiny_config(d_model=30)
    with pytest.raises(BfexportError, match=r"\(0, 1\]"):
        tiny_config(budget_thresholds=[0.5, 0.5, 0.0])


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_training_gates_are_hard_in_value_and_carry_gradients_to_the_router(architecture: str) -> None:
    model = _model(architecture).train()
    ids, mask = _batch()
    gate = ExploreExploit(model.config, TrainConfig(), total_steps=10)
    for step in (0, 9):  # exploring, then exploiting
        gate.step = step
        model.zero_grad()
        out = model(ids, mask, gate_fn=gate, labels=torch.zeros(len(ids), dtype=torch.long))
        (out.loss + 0.1 * expected_budget(out.budget_probs)).backward()
        router = model.blocks[1].attn.router.proj.weight.grad
        assert router is not None and float(router.abs().sum()) > 0
    gates, sel = gate(0, torch.randn(5, 4), torch.randn(5, 4))
    assert set(gates.detach().unique().tolist()) <= {0.0, 1.0}
    assert (gates.detach().sum(-1) == sel.counts.float()).all()
