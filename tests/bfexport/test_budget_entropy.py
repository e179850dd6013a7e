"""The entropy bonus on q(k|x): it measures H(q) in nats, its gradient makes q softer, it keeps q
softer in training under either budget signal, and it is refused where no budget head trains."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from safetensors.torch import load_file

from bfexport import data
from bfexport.checkpoint import load_checkpoint, load_tokenizer_json
from bfexport.errors import BfexportError
from bfexport.train import BUDGET_SIGNALS, TrainConfig, budget_entropy, tensors, train
from tests.bfexport.test_train import TINY, examples

SMALL = {**TINY, "n_heads": 4, "d_model": 16, "n_layers": 2, "epochs": 3, "explore_frac": 0.3}
FAST = {**SMALL, "lr": 0.01, "cost_lambda": 1.0}  # q of log 4 = 1.39 nats at the start falls to ~1.1 in 9 steps


def test_budget_entropy_is_the_mean_entropy_in_nats() -> None:
    H = 4
    uniform, certain = torch.full((3, H), 1 / H), torch.eye(H)[:3]
    assert budget_entropy([uniform, certain]).item() == pytest.approx(math.log(H) / 2)


def test_a_gradient_step_on_the_bonus_raises_the_entropy_of_every_q() -> None:
    torch.manual_seed(0)
    logits = (3 * torch.randn(5, 2, 8)).requires_grad_()  # (B, L, H): peaked budgets
    before = torch.special.entr(logits.softmax(-1)).sum(-1)
    (-budget_entropy(list(logits.softmax(-1).unbind(1)))).backward()
    assert logits.grad is not None
    with torch.no_grad():
        after = torch.special.entr((logits - 0.5 * logits.grad).softmax(-1)).sum(-1)
    assert (after > before).all()


def _mean_entropy(checkpoint: Path) -> float:
    """Mean over layers and the training texts of H(q(.|x)) of a trained checkpoint."""
    model = load_checkpoint(checkpoint).eval()
    tokenizer = data.tokenizer_from_str(load_tokenizer_json(checkpoint))
    ids, mask, _ = tensors(tokenizer, examples(), model.config.labels, model.config.max_length, torch.device("cpu"))
    probs = []

    def hook(_: Any, __: Any, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        probs.append(output[0].softmax(-1))
    handles = [block.attn.router.register_forward_hook(hook) for block in model.blocks]
    model.predict(ids, mask)
    for handle in handles:
        handle.remove()
    return float(budget_entropy(probs))


@pytest.mark.parametrize("signal", BUDGET_SIGNALS)
def test_training_with_the_bonus_keeps_q_softer(signal: str, tmp_path: Path) -> None:
    for name, weight in (("off", 0.0), ("on", 1.0)):
        train(examples(), examples(), TrainConfig(**{**FAST, "budget_signal": signal, "budget_entropy": weight}),
              tmp_path / name, show_progress=False)
    assert _mean_entropy(tmp_path / "on") > _mean_entropy(tmp_path / "off") + 0.1  # 1.34 vs 1.08; paired 1.36 vs 1.14


def test_a_zero_weight_trains_exactly_as_without_the_field(tmp_path: Path) -> None:
    """0.0 is the default and adds nothing to the loss: the same weights as a config that never set it."""
    train(examples(), examples(), TrainConfig(**{**SMALL, "budget_signal": "paired"}), tmp_path / "a",
          show_progress=False)
    train(examples(), examples(), TrainConfig(**{**SMALL, "budget_signal": "paired", "budget_entropy": 0.0}),
          tmp_path / "b", show_progress=False)
    a, b = (load_file(str(tmp_path / n / "model.safetensors")) for n in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("overrides, message", [
    ({"budget_entropy": -0.1}, "budget_entropy must be >= 0"),
    ({"budget_entropy": float("nan")}, "budget_entropy must be >= 0"),
    ({"budget_entropy": 0.1, "dense": True}, "budget_entropy trains the budget head"),
    ({"budget_entropy": 0.1, "static_heads": [[0]]}, "budget_entropy trains the budget head"),
])
def test_a_bonus_without_a_budget_head_to_train_is_refused(overrides: dict[str, object], message: str,
                                                           tmp_path: Path) -> None:
    with pytest.raises(BfexportError, match=message):
        train(examples(), examples(), TrainConfig(**{**TINY, **overrides}), tmp_path / "x",  # type: ignore[arg-type]
              show_progress=False)
    assert not (tmp_path / "x").exists()


def test_the_cli_refuses_the_bonus_with_dense_on_one_line(bfexport: Callable[..., Any], data_file: Path,
                                                          tmp_path: Path) -> None:
    result = bfexport("train", "--train", data_file, "--validation", data_file, "-o", tmp_path / "c", "--dense",
                      "--budget-entropy", "0.1", "--epochs", "1", "--vocab-size", "150", "--max-length", "16",
                      "--d-model", "16", "--n-heads", "2", "--n-layers", "1", "--d-ff", "32")
    assert result.returncode == 2
    assert "budget_entropy trains the budget head" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "c").exists()
