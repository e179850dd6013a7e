"""A Hugging Face-style directory around an exported model, for Optimum and transformers.

    write_hf_directory("out/model.onnx", "out/hf")

    # with the `hf` extra installed:
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline
    model = ORTModelForSequenceClassification.from_pretrained("out/hf")
    tokenizer = AutoTokenizer.from_pretrained("out/hf")
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer)
    classify(["A library for parsing JSON"], truncation=True)

The directory holds:
  model.onnx               the exported file, byte for byte (inputs input_ids and attention_mask,
                           output logits first; the budget inputs keep their defaults, and Optimum
                           ignores the extra head_counts / selected_heads outputs)
  config.json              a plain "bert" config (no remote code) whose sizes mirror ours, with
                           id2label / label2id from the labels; our own config is kept whole under
                           the "bfexport" key, the flavor and static heads beside it
  tokenizer.json           the model's tokenizer as bfexport encodes with it: bfexport's own
                           WordPiece without a post-processor (nothing added around the text, as in
                           training), or an imported one with its post-processor ([CLS] ... [SEP],
                           <s> ... </s>), which transformers applies and keeps when truncating
  tokenizer_config.json    PreTrainedTokenizerFast, its padding and unknown tokens, model_max_length
                           = max_length, right padding and truncation, inputs input_ids and
                           attention_mask only
  special_tokens_map.json

Writing needs only json and shutil: this module imports neither transformers nor optimum.
The directory appears complete or not at all.

Two differences from bfexport's own encoding remain (see `bfexport.data.encode`): transformers
only truncates to max_length when asked (pass truncation=True to the tokenizer or pipeline),
and a text with no tokens stays empty instead of becoming a single [UNK].
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bfexport import data
from bfexport.errors import BfexportError
from bfexport.exported import ExportedModel, load_exported
from bfexport.files import DirKind, atomic_dir
from bfexport.names import TOKEN_INPUTS

MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
FILES = (MODEL_FILE, CONFIG_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_FILE)
CONFIG_KEY = "bfexport"  # our BudgetFormerConfig, whole, inside config.json
HF_DIR = DirKind("a directory", CONFIG_FILE, CONFIG_KEY)
MODEL_INPUTS = list(TOKEN_INPUTS)
HF_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}  # config.activation -> hidden_act


def write_hf_directory(exported: ExportedModel | str | Path, directory: str | Path) -> Path:
    """Write `directory` (model.onnx, config.json, tokenizer files) for `exported`, atomically.

    `exported` is an ExportedModel or the path of an ONNX file written by `bfexport convert`; it
    must carry its tokenizer. An existing `directory` is replaced only when it is empty or was
    written by this function (its config.json has a "bfexport" key); anything else is refused,
    so a mistyped path never deletes unrelated files.
    """
    if not isinstance(exported, ExportedModel):
        exported = load_exported(exported)
    if exported.tokenizer_json is None:
        raise BfexportError(f"{exported.path}: no tokenizer embedded; an HF directory needs one "
                            "(export with `bfexport convert`, which embeds the checkpoint's tokenizer)")
    directory = Path(directory)
    tokenizer_json = hf_tokenizer_json(exported.tokenizer_json, str(exported.path))
    with atomic_dir(directory, HF_DIR) as tmp:
        target = tmp / MODEL_FILE
        if exported.path.is_file():
            shutil.copyfile(exported.path, target)
        else:  # an in-memory model that was never saved
            target.write_bytes(exported.proto.SerializeToString(deterministic=True))
        _write_json(tmp / CONFIG_FILE, hf_config(exported))
        (tmp / TOKENIZER_FILE).write_text(tokenizer_json, encoding="utf-8")
        _write_json(tmp / TOKENIZER_CONFIG_FILE, tokenizer_config(exported))
        _write_json(tmp / SPECIAL_TOKENS_FILE, special_tokens_map(tokenizer_json))
    return directory


def hf_config(exported: ExportedModel) -> dict[str, Any]:
    """A config.json transformers' AutoConfig loads as a BertConfig, with nothing of ours lost.

    The BERT sizes only describe the model (Optimum never builds a BERT from them); labels,
    num_labels and problem_type are what the text-classification pipeline reads.
    """
    cfg = exported.config
    labels = list(cfg.labels)
    return {
        "model_type": "bert",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "intermediate_size": cfg.d_ff,
        "hidden_act": HF_ACTIVATIONS[cfg.activation],
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.dropout,
        "max_position_embeddings": cfg.max_length,
        "type_vocab_size": 1,
        "layer_norm_eps": cfg.layer_norm_eps,
        "pad_token_id": cfg.pad_token_id,
        "num_labels": len(labels),
        "id2label": {str(i): label for i, label in enumerate(labels)},
        "label2id": {label: i for i, label in enumerate(labels)},
        "problem_type": "single_label_classification",
        CONFIG_KEY: cfg.to_dict(),
        f"{CONFIG_KEY}_flavor": exported.flavor,
        f"{CONFIG_KEY}_static_heads": exported.static_heads,
    }


def hf_tokenizer_json(tokenizer_json: str, source: str = "tokenizer") -> str:
    """Our tokenizer.json for transformers: checked as bfexport checks it, with no stored
    truncation (transformers sets it per call). Its post-processor stays as it is: none for
    bfexport's own tokenizers (nothing is added around the text whatever add_special_tokens
    says), an imported model's [CLS] ... [SEP] otherwise, exactly as bfexport encodes. The
    padding stays too: it names the padding token (tokenizer_config.json names it again)."""
    data.tokenizer_from_str(tokenizer_json, source)  # raises BfexportError on a bad tokenizer
    spec = json.loads(tokenizer_json)
    spec["truncation"] = None
    return json.dumps(spec, ensure_ascii=False, indent=2) + "\n"


def tokenizer_config(exported: ExportedModel) -> dict[str, Any]:
    """tokenizer_config.json: the plain fast tokenizer class (a "bert" tokenizer would add
    [CLS] / [SEP]), inputs without token_type_ids, right padding and truncation."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": exported.config.max_length,
        "padding_side": "right",
        "truncation_side": "right",
        "model_input_names": list(MODEL_INPUTS),
        "clean_up_tokenization_spaces": True,
        **special_tokens_map(exported.tokenizer_json or ""),
    }


def special_tokens_map(tokenizer_json: str) -> dict[str, str]:
    """The padding token (an imported tokenizer names it in its padding; bfexport's is [PAD]) and
    the unknown token (the model's, when it has one)."""
    spec = json.loads(tokenizer_json)
    padding = spec.get("padding")
    tokens = {"pad_token": padding["pad_token"] if padding else data.PAD_TOKEN}
    unk = (spec.get("model") or {}).get("unk_token")
    if unk is not None:
        tokens["unk_token"] = unk
    return tokens


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


__all__ = ["FILES", "HF_DIR", "hf_config", "hf_tokenizer_json", "tokenizer_config", "write_hf_directory"]
