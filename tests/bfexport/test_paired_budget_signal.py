"""The paired budget signal: the probe pass replays the main pass but for one layer's k, and the
REINFORCE term moves q(k | x) toward the budget that served each input better."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bfexport.checkpoint import load_checkpoint
from bfexport.errors import BfexportError
from bfexport.train import ExploreExploit, Probe, TrainConfig, paired_budget_loss, train
from tests.bfexport.test_train import TINY, examples
from tests.factories import tiny_model


def _batch(B: int = 6, S: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    ids = torch.randint(2, 100, (B, S))
    mask = torch.ones(B, S, dtype=torch.long)
    mask[1, 5:], mask[4, 2:] = 0, 0
    return ids, mask


@pytest.mark.parametrize("step", [0, 9])  # exploring (sampled k, Gumbel heads), then exploiting
def test_the_probe_replays_the_main_pass_heads_and_dropout(step: int) -> None:
    model = tiny_model(vocab_size=100, dropout=0.3).train()
    ids, mask = _batch()
    gate = ExploreExploit(model.config, TrainConfig(), total_steps=10)
    gate.step = step
    state = torch.get_rng_state()
    main = model(ids, mask, gate_fn=gate)
    B = ids.shape[0]
    torch.set_rng_state(state)
    nothing = Probe(torch.zeros(B, dtype=torch.long), torch.zeros(B, dtype=torch.long))
    with gate.probing(nothing), torch.no_grad():
        same = model(ids, mask, gate_fn=gate)
    assert gate.probe is None  # the main pass's rule again after the block
    assert torch.equal(same.head_counts, main.head_counts)
    assert torch.allclose(same.logits, main.logits.detach(), atol=1e-6)  # same heads and same dropout units

    probe = gate.plan_probe(B, ids.device)
    torch.set_rng_state(state)
    with gate.probing(probe), torch.no_grad():
        changed = model(ids, mask, gate_fn=gate)
    expected = main.head_counts.clone()
    expected[torch.arange(B), probe.layer] += probe.delta
    assert torch.equal(changed.head_counts, expected)
    assert ((expected >= 1) & (expected <= model.config.n_heads)).all()
    assert not torch.allclose(changed.logits, main.logits.detach())
    for layer in range(model.config.n_layers):  # the heads run, by rank, are the main pass's
        main_heads, probe_heads = main.selections[layer].heads, changed.selections[layer].heads
        assert torch.equal(main_heads, probe_heads)


def test_plan_probe_keeps_every_budget_within_one_and_h() -> None:
    model = tiny_model(vocab_size=100)
    gate = ExploreExploit(model.config, TrainConfig(), total_steps=10)
    H, L, B = model.config.n_heads, model.config.n_layers, 400
    for layer in range(L):  # samples at both ends of the range in every layer
        counts = torch.where(torch.arange(B) % 2 == 0, 1, H)
        gate.chosen[layer] = (torch.arange(H).expand(B, H), counts)
    probe = gate.plan_probe(B, torch.device("cpu"))
    k = torch.where(torch.arange(B) % 2 == 0, 1, H)
    assert ((k + probe.delta >= 1) & (k + probe.delta <= H)).all()
    assert set(probe.layer.tolist()) == set(range(L))


@pytest.mark.parametrize("probe_better", [True, False])
def test_the_budget_loss_moves_q_toward_the_better_budget(probe_better: bool) -> None:
    torch.manual_seed(0)
    H, L, B = 4, 2, 8
    logits = torch.zeros(B, L, H, requires_grad=True)
    gate = ExploreExploit(tiny_model(vocab_size=100, n_heads=H, n_layers=L, d_model=16).config, TrainConfig(), 10)
    for layer in range(L):
        gate.chosen[layer] = (torch.arange(H).expand(B, H), torch.full((B,), 2))
    probe = Probe(torch.randint(L, (B,)), torch.where(torch.arange(B) < 4, 1, -1))
    main_loss = torch.ones(B)
    probe_loss = main_loss + (-0.5 if probe_better else 0.5)
    loss = paired_budget_loss(list(logits.softmax(-1).unbind(1)), gate, probe, main_loss, probe_loss)
    loss.backward()
    assert logits.grad is not None
    with torch.no_grad():
        q_after = (logits - 1.0 * logits.grad).softmax(-1)
    rows = torch.arange(B)
    k_probe = 2 + probe.delta
    moved = q_after[rows, probe.layer, k_probe - 1] - 0.25  # q was uniform: 1 / H
    assert ((moved > 0) if probe_better else (moved < 0)).all()


def test_paired_training_writes_a_checkpoint_and_records_the_signal(tmp_path: Path) -> None:
    tc = TrainConfig(**{**TINY, "n_heads": 4, "d_model": 16, "n_layers": 2, "budget_signal": "paired"})
    train(examples(), examples(), tc, tmp_path / "p", show_progress=False)
    assert load_checkpoint(tmp_path / "p").config.adaptive
    args = json.loads((tmp_path / "p" / "training_args.json").read_text())
    assert args["budget_signal"] == "paired"


def test_an_unknown_budget_signal_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BfexportError, match="budget_signal"):
        train(examples(), examples(), TrainConfig(**{**TINY, "budget_signal": "magic"}), tmp_path / "x",
              show_progress=False)
