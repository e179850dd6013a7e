"""Static head pruning: Michel et al. head importance and the heads it keeps."""

from __future__ import annotations

import numpy as np
import torch

from bfexport import data, pruning
from tests.factories import LABELS, TEXTS, tiny_model


def tokenizer():  # the same toy vocabulary the model's ids index
    return data.train_tokenizer(TEXTS, 120)


def examples() -> list[data.Example]:
    return [data.Example(t, LABELS[i % 4], f"toy:{i}") for i, t in enumerate(TEXTS)]


def test_importance_is_per_layer_normalised_and_zero_for_a_dead_head() -> None:
    model = tiny_model(init="strong")
    with torch.no_grad():
        model.blocks[1].attn.out_weight[2].zero_()  # head 2 of layer 1 cannot change the output
    scores = pruning.head_importance(model, tokenizer(), examples())
    assert scores.shape == (3, 4)
    assert np.allclose(np.linalg.norm(scores, axis=1), 1.0)
    assert scores[1, 2] == 0.0 and (scores[1, [0, 1, 3]] > 0).all()
    assert not model.training  # left as it was


def test_top_heads_keeps_the_k_best_per_layer_in_index_order() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.5], [1.0, 0.0, 0.2, 0.3]])
    assert pruning.top_heads(scores, 2) == [[1, 2], [0, 3]]  # the tie 0.5/0.5 goes to the lower index
    assert pruning.top_heads(scores, 1) == [[1], [0]]
    assert pruning.top_heads(scores, [3, 1]) == [[1, 2, 3], [0]]  # one k per layer
