"""The model's architecture options are the BERT family's math: a tiny random transformers
BertForSequenceClassification / DistilBertForSequenceClassification /
RobertaForSequenceClassification, its weights copied by hand into our state-dict keys (the
config contract's layout), gives the same logits within 1e-5 at full budget.

The mapping below is a test helper only: the product importer is `bfexport import`.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from bfexport.model import BudgetFormerConfig, BudgetFormerForSequenceClassification

transformers = pytest.importorskip("transformers")

D, H, L, F, V, S = 32, 4, 2, 64, 60, 24  # width, heads, layers, FFN width, vocabulary, max_length
ACTIVATION = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}

# Per architecture: its transformers names (prefix, embeddings, per-layer modules, the head) and our config.
ARCHS: dict[str, dict[str, Any]] = {
    "bert": dict(prefix="bert", layer="encoder.layer", q="attention.self.query", k="attention.self.key",
                 v="attention.self.value", o="attention.output.dense", ln_attn="attention.output.LayerNorm",
                 up="intermediate.dense", down="output.dense", ln_ffn="output.LayerNorm",
                 pooler="bert.pooler.dense", classifier="classifier", ln_emb="LayerNorm",
                 config=dict(type_vocab_size=2, pooler="tanh", layer_norm_eps=1e-12)),
    "distilbert": dict(prefix="distilbert", layer="transformer.layer", q="attention.q_lin", k="attention.k_lin",
                       v="attention.v_lin", o="attention.out_lin", ln_attn="sa_layer_norm", up="ffn.lin1",
                       down="ffn.lin2", ln_ffn="output_layer_norm", pooler="pre_classifier",
                       classifier="classifier", ln_emb="LayerNorm",
                       config=dict(type_vocab_size=0, pooler="relu", layer_norm_eps=1e-12)),
    "roberta": dict(prefix="roberta", layer="encoder.layer", q="attention.self.query", k="attention.self.key",
                    v="attention.self.value", o="attention.output.dense", ln_attn="attention.output.LayerNorm",
                    up="intermediate.dense", down="output.dense", ln_ffn="output.LayerNorm",
                    pooler="classifier.dense", classifier="classifier.out_proj", ln_emb="LayerNorm",
                    config=dict(type_vocab_size=1, pooler="tanh", layer_norm_eps=1e-5, position_offset=2)),
}


def hf_model(arch: str, hidden_act: str, seed: int) -> Any:
    torch.manual_seed(seed)
    common = dict(vocab_size=V, num_labels=3, initializer_range=0.2)  # FFN inputs of order 1: GELU variants differ
    if arch == "distilbert":
        cfg = transformers.DistilBertConfig(dim=D, n_layers=L, n_heads=H, hidden_dim=F, max_position_embeddings=S,
                                            activation=hidden_act, **common)
        model = transformers.DistilBertForSequenceClassification(cfg)
    elif arch == "roberta":
        cfg = transformers.RobertaConfig(hidden_size=D, num_hidden_layers=L, num_attention_heads=H,
                                         intermediate_size=F, max_position_embeddings=S + 2, type_vocab_size=1,
                                         layer_norm_eps=1e-5, hidden_act=hidden_act, pad_token_id=1, **common)
        model = transformers.RobertaForSequenceClassification(cfg)
    else:
        cfg = transformers.BertConfig(hidden_size=D, num_hidden_layers=L, num_attention_heads=H, intermediate_size=F,
                                      max_position_embeddings=S, hidden_act=hidden_act, **common)
        model = transformers.BertForSequenceClassification(cfg)
    with torch.no_grad():  # LayerNorms and biases off their 1 / 0 init, so a misplaced one shows
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def our_state(hf: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """transformers' weights under our keys: per-head Q/K/V columns and Wo rows in x @ W form."""
    a, dh = ARCHS[arch], D // H
    emb = f"{a['prefix']}.embeddings"
    out = {"tok_emb.weight": hf[f"{emb}.word_embeddings.weight"],
           "pos_emb.weight": hf[f"{emb}.position_embeddings.weight"],
           "ln_emb.weight": hf[f"{emb}.{a['ln_emb']}.weight"], "ln_emb.bias": hf[f"{emb}.{a['ln_emb']}.bias"]}
    if a["config"]["type_vocab_size"]:
        out["type_emb.weight"] = hf[f"{emb}.token_type_embeddings.weight"]
    for layer in range(L):
        src, dst = f"{a['prefix']}.{a['layer']}.{layer}", f"blocks.{layer}"
        w = [hf[f"{src}.{a[part]}.weight"].T.reshape(D, H, dh) for part in "qkv"]  # (d, H, dh) each
        b = [hf[f"{src}.{a[part]}.bias"].reshape(H, dh) for part in "qkv"]
        out[f"{dst}.attn.qkv_weight"] = torch.cat(w, dim=-1).permute(1, 0, 2).contiguous()  # (H, d, 3dh)
        out[f"{dst}.attn.qkv_bias"] = torch.cat(b, dim=-1)  # (H, 3dh)
        out[f"{dst}.attn.out_weight"] = hf[f"{src}.{a['o']}.weight"].T.reshape(H, dh, D).contiguous()
        out[f"{dst}.attn.out_bias"] = hf[f"{src}.{a['o']}.bias"]
        out[f"{dst}.attn.router.proj.weight"] = torch.zeros(2 * H, D)
        out[f"{dst}.attn.router.proj.bias"] = torch.zeros(2 * H)
        for ours, theirs in (("ln_attn", a["ln_attn"]), ("ln_ffn", a["ln_ffn"]), ("ffn.up", a["up"]),
                             ("ffn.down", a["down"])):
            for kind in ("weight", "bias"):
                out[f"{dst}.{ours}.{kind}"] = hf[f"{src}.{theirs}.{kind}"]
    for ours, theirs in (("pooler", a["pooler"]), ("classifier", a["classifier"])):
        for kind in ("weight", "bias"):
            out[f"{ours}.{kind}"] = hf[f"{theirs}.{kind}"]
    return out


def budgetformer(hf: Any, arch: str, hidden_act: str) -> BudgetFormerForSequenceClassification:
    config = BudgetFormerConfig(vocab_size=V, max_length=S, d_model=D, n_heads=H, n_layers=L, d_ff=F,
                                labels=["a", "b", "c"], dropout=0.0, budget_thresholds=[1.0] * L,
                                pad_token_id=1 if arch == "roberta" else 0, norm="post",
                                activation=ACTIVATION[hidden_act], pooling="first", **ARCHS[arch]["config"])
    model = BudgetFormerForSequenceClassification(config)
    model.load_state_dict(our_state(hf.state_dict(), arch))  # strict: every key ours, none left over
    return model.eval()


@pytest.mark.parametrize("arch, hidden_act", [("bert", "gelu"), ("bert", "gelu_new"), ("bert", "gelu_pytorch_tanh"),
                                              ("bert", "relu"), ("distilbert", "gelu"), ("roberta", "gelu")])
def test_full_budget_logits_match_transformers(arch: str, hidden_act: str) -> None:
    hf = hf_model(arch, hidden_act, seed=0)
    model = budgetformer(hf, arch, hidden_act)
    generator = torch.Generator().manual_seed(1)
    lengths = torch.tensor([S, 5, 1, 17])
    ids = torch.randint(3, V, (4, S), generator=generator)
    mask = (torch.arange(S)[None, :] < lengths[:, None]).long()
    ids = torch.where(mask.bool(), ids, model.config.pad_token_id)  # padding on the right, as bfexport pads
    ours = model.predict(ids, mask)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask).logits
    assert (ours.head_counts == H).all()  # full budget: every head ran
    torch.testing.assert_close(ours.logits, theirs, atol=1e-5, rtol=0)

