"""The Hugging Face sequence classifiers bfexport imports, as data: for each config.json
`model_type`, how its fields become a BudgetFormerConfig and where each weight lives.

One Layout per weight layout. Several model types share one (XLM-RoBERTa and CamemBERT are
RoBERTa's; MiniLM checkpoints are model_type "bert"). Names are HF state-dict keys with `{l}`
for the layer index; a module name stands for its `.weight` and `.bias`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bfexport.errors import BfexportError


@dataclass(frozen=True)
class Layout:
    """Where one architecture keeps its weights (bfexport name -> HF name)."""

    embeddings: Mapping[str, str]  # full keys: tok_emb.weight, pos_emb.weight, type_emb.weight
    modules: Mapping[str, str]  # weight + bias pairs outside the layers: ln_emb, pooler, classifier
    attention: tuple[str, str, str, str]  # per layer: the q, k, v and output nn.Linear modules
    layer: Mapping[str, str]  # per layer, weight + bias: ln_attn, ffn.up, ffn.down, ln_ffn
    ignored: tuple[str, ...] = ("position_ids", "token_type_ids")  # buffers older checkpoints saved


def _bert_like(prefix: str, head: Mapping[str, str]) -> Layout:
    layer = prefix + ".encoder.layer.{l}."
    return Layout(
        embeddings={"tok_emb.weight": f"{prefix}.embeddings.word_embeddings.weight",
                    "pos_emb.weight": f"{prefix}.embeddings.position_embeddings.weight",
                    "type_emb.weight": f"{prefix}.embeddings.token_type_embeddings.weight"},
        modules={"ln_emb": f"{prefix}.embeddings.LayerNorm", **head},
        attention=(layer + "attention.self.query", layer + "attention.self.key", layer + "attention.self.value",
                   layer + "attention.output.dense"),
        layer={"ln_attn": layer + "attention.output.LayerNorm", "ffn.up": layer + "intermediate.dense",
               "ffn.down": layer + "output.dense", "ln_ffn": layer + "output.LayerNorm"})


BERT = _bert_like("bert", {"pooler": "bert.pooler.dense", "classifier": "classifier"})
ROBERTA = _bert_like("roberta", {"pooler": "classifier.dense", "classifier": "classifier.out_proj"})
ELECTRA = _bert_like("electra", {"pooler": "classifier.dense", "classifier": "classifier.out_proj"})
_DISTIL = "distilbert.transformer.layer.{l}."
DISTILBERT = Layout(
    embeddings={"tok_emb.weight": "distilbert.embeddings.word_embeddings.weight",
                "pos_emb.weight": "distilbert.embeddings.position_embeddings.weight"},
    modules={"ln_emb": "distilbert.embeddings.LayerNorm", "pooler": "pre_classifier", "classifier": "classifier"},
    attention=(_DISTIL + "attention.q_lin", _DISTIL + "attention.k_lin", _DISTIL + "attention.v_lin",
               _DISTIL + "attention.out_lin"),
    layer={"ln_attn": _DISTIL + "sa_layer_norm", "ffn.up": _DISTIL + "ffn.lin1", "ffn.down": _DISTIL + "ffn.lin2",
           "ln_ffn": _DISTIL + "output_layer_norm"})

ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
"""HF activation names -> bfexport's (others, e.g. gelu_fast or swish, compute something else)."""


def field(hf: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """A config.json field, required unless it has a default."""
    if key in hf:
        return hf[key]
    if default is None:
        raise BfexportError(f"config.json: missing '{key}'")
    return default


def activation(hf: Mapping[str, Any], key: str, default: str | None = None) -> str:
    name = field(hf, key, default)
    if name not in ACTIVATIONS:
        raise BfexportError(f"config.json: {key} {name!r} is not supported (supported: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]


def _absolute_positions(hf: Mapping[str, Any]) -> None:
    kind = hf.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise BfexportError(f"config.json: position_embedding_type {kind!r} is not supported (only 'absolute')")
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise BfexportError("config.json: a decoder (is_decoder / add_cross_attention) is not an encoder classifier")


def bert_config(hf: Mapping[str, Any], *, position_offset: int = 0, pooler: str = "tanh") -> dict[str, Any]:
    """BERT's fields; RoBERTa and ELECTRA are the same with their own offset and head."""
    _absolute_positions(hf)
    return {"vocab_size": field(hf, "vocab_size"), "d_model": field(hf, "hidden_size"),
            "n_heads": field(hf, "num_attention_heads"), "n_layers": field(hf, "num_hidden_layers"),
            "d_ff": field(hf, "intermediate_size"),
            "max_length": field(hf, "max_position_embeddings") - position_offset,
            "pad_token_id": field(hf, "pad_token_id", 0), "dropout": field(hf, "hidden_dropout_prob", 0.1),
            "norm": "post", "layer_norm_eps": field(hf, "layer_norm_eps", 1e-12),
            "activation": activation(hf, "hidden_act", "gelu"), "type_vocab_size": field(hf, "type_vocab_size", 2),
            "position_offset": position_offset, "pooling": "first", "pooler": pooler}


def roberta_config(hf: Mapping[str, Any]) -> dict[str, Any]:
    """RoBERTa numbers positions from padding_idx + 1 (its pad_token_id, 1)."""
    return bert_config(hf, position_offset=field(hf, "pad_token_id", 1) + 1)


def electra_config(hf: Mapping[str, Any]) -> dict[str, Any]:
    if field(hf, "embedding_size", hf.get("hidden_size")) != hf.get("hidden_size"):
        raise BfexportError(f"config.json: ELECTRA with embedding_size {hf['embedding_size']} != hidden_size "
                            f"{hf.get('hidden_size')} (a projected embedding) is not supported")
    return bert_config(hf, pooler="gelu")


def distilbert_config(hf: Mapping[str, Any]) -> dict[str, Any]:
    return {"vocab_size": field(hf, "vocab_size"), "d_model": field(hf, "dim"), "n_heads": field(hf, "n_heads"),
            "n_layers": field(hf, "n_layers"), "d_ff": field(hf, "hidden_dim"),
            "max_length": field(hf, "max_position_embeddings"), "pad_token_id": field(hf, "pad_token_id", 0),
            "dropout": field(hf, "dropout", 0.1), "norm": "post", "layer_norm_eps": 1e-12,
            "activation": activation(hf, "activation", "gelu"), "type_vocab_size": 0, "position_offset": 0,
            "pooling": "first", "pooler": "relu"}


@dataclass(frozen=True)
class Architecture:
    classifier: str  # the transformers class whose checkpoints this reads
    layout: Layout
    config: Callable[[Mapping[str, Any]], dict[str, Any]]  # config.json -> BudgetFormerConfig fields


ARCHITECTURES = {
    "bert": Architecture("BertForSequenceClassification", BERT, bert_config),
    "roberta": Architecture("RobertaForSequenceClassification", ROBERTA, roberta_config),
    "xlm-roberta": Architecture("XLMRobertaForSequenceClassification", ROBERTA, roberta_config),
    "camembert": Architecture("CamembertForSequenceClassification", ROBERTA, roberta_config),
    "electra": Architecture("ElectraForSequenceClassification", ELECTRA, electra_config),
    "distilbert": Architecture("DistilBertForSequenceClassification", DISTILBERT, distilbert_config),
}
"""model_type -> what it is read as."""


def architecture(hf: Mapping[str, Any]) -> Architecture:
    """The entry for a config.json, refusing other model types and heads other than sequence classification."""
    model_type = hf.get("model_type")
    supported = ", ".join(f"{a.classifier} ({t})" for t, a in ARCHITECTURES.items())
    if model_type not in ARCHITECTURES:
        raise BfexportError(f"config.json: model_type {model_type!r} is not supported; supported: {supported}")
    arch = ARCHITECTURES[model_type]
    declared = hf.get("architectures") or [arch.classifier]
    if arch.classifier not in declared:
        raise BfexportError(f"config.json: architectures {declared} is not {arch.classifier}; bfexport imports "
                            f"sequence classifiers ({supported})")
    problem = hf.get("problem_type")
    if problem not in (None, "single_label_classification"):
        raise BfexportError(f"config.json: problem_type {problem!r}; bfexport imports single-label classifiers")
    return arch
