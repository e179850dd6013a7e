"""The trunk written op by op computes the transformers model too: a tiny random BERT / DistilBERT /
RoBERTa classifier, mapped by hand (tests/bfexport/test_transformers_parity.py), exported and run
by ONNX Runtime gives transformers' logits within 1e-5 at full budget."""

from __future__ import annotations

import onnxruntime as ort
import pytest
import torch

from converters import AdaptiveExport, export
from tests.bfexport.test_transformers_parity import ARCHS, H, S, V, budgetformer, hf_model


@pytest.mark.parametrize("arch", ARCHS)
def test_exported_graph_gives_transformers_logits(arch: str) -> None:
    hf = hf_model(arch, "gelu", seed=2)
    model = budgetformer(hf, arch, "gelu")
    lengths = torch.tensor([S, 9])
    mask = (torch.arange(S)[None, :] < lengths[:, None]).long()
    ids = torch.where(mask.bool(), torch.randint(3, V, (2, S), generator=torch.Generator().manual_seed(3)),
                      model.config.pad_token_id)
    session = ort.InferenceSession(export(model, AdaptiveExport()).SerializeToString())
    logits, counts = session.run(["logits", "head_counts"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask).logits
    assert (counts == H).all()
    torch.testing.assert_close(torch.from_numpy(logits), theirs, atol=1e-5, rtol=0)
