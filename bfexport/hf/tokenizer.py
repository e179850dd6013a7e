"""The tokenizer of a Hugging Face checkpoint directory, as one tokenizer.json that encodes as the
transformers fast tokenizer does (special tokens added by its post-processor).

tokenizer.json is taken as it is when present. Otherwise it is built with the `tokenizers`
library the way transformers converts a slow tokenizer: vocab.txt -> WordPiece with BERT's
normalizer, pre-tokenizer and [CLS] ... [SEP]; vocab.json + merges.txt -> byte-level BPE with
<s> ... </s>. The padding token (tokenizer_config.json / special_tokens_map.json) must have the
config's pad_token_id; it is recorded in the written tokenizer.json's padding, which is how
bfexport knows a tokenizer's padding token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

from bfexport.data import parse_tokenizer, read_tokenizer_file, tokenizer_from_str
from bfexport.errors import BfexportError
from bfexport.files import read_json

WORDPIECE_DEFAULTS = {"unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                      "mask_token": "[MASK]"}
BPE_DEFAULTS = {"unk_token": "<unk>", "cls_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>",
                "mask_token": "<mask>", "bos_token": "<s>", "eos_token": "</s>"}


def _settings(directory: Path) -> dict[str, Any]:
    """tokenizer_config.json overlaid with special_tokens_map.json; token entries as strings."""
    settings: dict[str, Any] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (directory / name).exists():
            data = read_json(directory / name)
            if not isinstance(data, dict):
                raise BfexportError(f"{directory / name}: expected a JSON object")
            settings.update(data)
    for key, value in list(settings.items()):
        if key.endswith("_token") and isinstance(value, dict):  # {"content": "[PAD]", "lstrip": ...}
            settings[key] = value.get("content")
    return settings


def _token(settings: Mapping[str, Any], defaults: Mapping[str, str], key: str) -> str:
    value = settings.get(key, defaults[key])
    if not isinstance(value, str):
        raise BfexportError(f"tokenizer settings: {key} must be a string, got {value!r}")
    return value


def _vocab_ids(tokenizer: tokenizers.Tokenizer, tokens: list[str], source: Path) -> list[int]:
    ids = [tokenizer.token_to_id(t) for t in tokens]
    for token, id_ in zip(tokens, ids, strict=True):
        if id_ is None:
            raise BfexportError(f"{source}: the special token {token!r} is not in the vocabulary")
    return [i for i in ids if i is not None]


def _wordpiece(directory: Path, settings: Mapping[str, Any]) -> tokenizers.Tokenizer:
    """BERT's tokenizer from vocab.txt, as transformers' BertConverter builds it."""
    path = directory / "vocab.txt"
    vocab: dict[str, int] = {}
    for line in read_tokenizer_file(path).splitlines():
        vocab.setdefault(line.rstrip("\n"), len(vocab))
    tok = {k: _token(settings, WORDPIECE_DEFAULTS, k) for k in WORDPIECE_DEFAULTS}
    tokenizer = tokenizers.Tokenizer(models.WordPiece(vocab=vocab, unk_token=tok["unk_token"]))
    lowercase = settings.get("do_lower_case", True)
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=settings.get("tokenize_chinese_chars", True),
        strip_accents=settings.get("strip_accents"), lowercase=bool(lowercase))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    cls_id, sep_id = _vocab_ids(tokenizer, [tok["cls_token"], tok["sep_token"]], path)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{tok['cls_token']}:0 $A:0 {tok['sep_token']}:0",
        pair=f"{tok['cls_token']}:0 $A:0 {tok['sep_token']}:0 $B:1 {tok['sep_token']}:1",
        special_tokens=[(tok["cls_token"], cls_id), (tok["sep_token"], sep_id)])
    tokenizer.add_special_tokens(list(dict.fromkeys(tok.values())))
    return tokenizer


def _byte_level_bpe(directory: Path, settings: Mapping[str, Any]) -> tokenizers.Tokenizer:
    """RoBERTa's tokenizer from vocab.json + merges.txt, as transformers' RobertaConverter builds it."""
    vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
    vocab = json.loads(read_tokenizer_file(vocab_path))
    merges = [tuple(line.split(" ")) for line in read_tokenizer_file(merges_path).splitlines()
              if line and not line.startswith("#version")]
    if not isinstance(vocab, dict) or any(len(m) != 2 for m in merges):
        raise BfexportError(f"{directory}: vocab.json / merges.txt are not a BPE vocabulary and merge list")
    tok = {k: _token(settings, BPE_DEFAULTS, k) for k in BPE_DEFAULTS}
    prefix_space = bool(settings.get("add_prefix_space", False))
    tokenizer = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                                                end_of_word_suffix="", fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix_space)
    tokenizer.decoder = decoders.ByteLevel()
    cls_id, sep_id = _vocab_ids(tokenizer, [tok["cls_token"], tok["sep_token"]], vocab_path)
    tokenizer.post_processor = processors.RobertaProcessing(
        sep=(tok["sep_token"], sep_id), cls=(tok["cls_token"], cls_id), add_prefix_space=prefix_space,
        trim_offsets=True)
    tokenizer.add_special_tokens(list(dict.fromkeys(tok.values())))
    return tokenizer


def import_tokenizer(directory: Path, vocab_size: int, pad_token_id: int) -> str:
    """The tokenizer.json text for a checkpoint of `vocab_size` ids whose padding id is pad_token_id."""
    settings = _settings(directory)
    if (directory / "tokenizer.json").exists():
        source = directory / "tokenizer.json"
        tokenizer = parse_tokenizer(read_tokenizer_file(source), source)
        defaults = WORDPIECE_DEFAULTS if tokenizer.token_to_id("[PAD]") is not None else BPE_DEFAULTS
    elif (directory / "vocab.txt").exists():
        source, tokenizer, defaults = directory / "vocab.txt", _wordpiece(directory, settings), WORDPIECE_DEFAULTS
    elif (directory / "vocab.json").exists() and (directory / "merges.txt").exists():
        source, tokenizer, defaults = directory / "vocab.json", _byte_level_bpe(directory, settings), BPE_DEFAULTS
    else:
        raise BfexportError(f"{directory}: no tokenizer (tokenizer.json, vocab.txt, or vocab.json + merges.txt)")
    pad = _token(settings, defaults, "pad_token")
    if tokenizer.token_to_id(pad) != pad_token_id:
        raise BfexportError(f"{source}: the padding token {pad!r} has id {tokenizer.token_to_id(pad)}, but "
                            f"config.json's pad_token_id is {pad_token_id}")
    tokenizer.no_truncation()
    tokenizer.enable_padding(pad_id=pad_token_id, pad_token=pad)
    text: str = tokenizer.to_str()
    tokenizer_from_str(text, str(source), vocab_size)  # every id below vocab_size, as bfexport checks on load
    return text
