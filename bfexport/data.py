"""Reading user data (JSONL / CSV / Hugging Face datasets), labels, tokenizer and batching.

Every mistake in a user's file raises BfexportError with one line that starts with
`file:line:` so the user can jump straight to the offending row.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import random
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

from bfexport.errors import BfexportError
from bfexport.files import is_utf8, loads_json, regular_file

MAX_CHARS = 1_000_000
"""Longest accepted line or text, in characters: one bad row must not exhaust memory."""
_MAX_LINE_BYTES = 4 * MAX_CHARS + 2  # a line of MAX_CHARS UTF-8 characters plus "\r\n"
_GZIP_MAGIC = b"\x1f\x8b"
_FORMATS = {".jsonl": "jsonl", ".csv": "csv"}
PAD_TOKEN, UNK_TOKEN = "[PAD]", "[UNK]"
MAX_TOKENIZER_BYTES = 64 * 2**20
"""Largest tokenizer.json accepted (large multilingual ones are about 20 MB): it is embedded in
every exported file and parsed by every command."""
CHARS_PER_TOKEN = 8
"""First guess of how many characters make max_length tokens (English averages about 4.5): only
that much of a long text is tokenized, and more only if it was not enough."""


@dataclass(frozen=True)
class Example:
    """One text with its label as written in the file, and where it came from for error messages."""

    text: str
    label: str | None  # None when the row has no label
    source: str  # "file:line"
    other_fields: tuple[str, ...] = ()  # an unlabelled row's fields besides text, for unlabelled_note


def read_examples(
    path: str | Path,
    *,
    require_labels: bool = False,
    limit: int | None = None,
    split: str | None = None,
) -> list[Example]:
    """Reads the examples of a .jsonl / .csv file (optionally gzipped) or a saved HF dataset.

    Rows need a `text` and may have a `label` (a name; an integer is kept as its decimal
    string, which `label_ids` matches against the model's label names). `limit` stops after
    that many examples, so a quick run does not parse a whole large file. `split` picks the
    split of a saved DatasetDict (default "train"). Any problem raises BfexportError naming
    the file and line.
    """
    path = Path(path)
    if limit is not None and limit < 1:
        raise BfexportError(f"limit must be at least 1, got {limit}")
    if not path.is_dir():  # a saved dataset is a directory; anything else must be a regular file
        regular_file(path, "no such file or directory")
    rows = _dataset_rows(path, split) if path.is_dir() else _file_rows(path)
    examples = [_example(row, source, require_labels) for source, row in itertools.islice(rows, limit)]
    if not examples:
        raise BfexportError(f"{path}: no usable rows")
    return examples


def _file_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Picks the reader from the extension (a trailing .gz is ignored: gzip is sniffed)."""
    suffixes = path.suffixes[-2:] if path.suffix == ".gz" else path.suffixes[-1:]
    kind = _FORMATS.get(suffixes[0].lower() if suffixes else "")
    if kind is None:
        raise BfexportError(
            f"{path}: unsupported file type '{''.join(suffixes)}'; use .jsonl, .jsonl.gz, .csv or .csv.gz"
        )
    return _jsonl_rows(path) if kind == "jsonl" else _csv_rows(path)


def _open_binary(path: Path) -> io.BufferedIOBase:
    """Opens a file for binary reading, decompressing it when it starts with the gzip magic bytes."""
    with path.open("rb") as probe:
        is_gzip = probe.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if is_gzip else path.open("rb")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yields (line number, text) with line endings kept; bounded memory per line."""
    with _open_binary(path) as stream:
        for number in itertools.count(1):
            try:
                raw = stream.readline(_MAX_LINE_BYTES + 1)
            except (OSError, EOFError, zlib.error) as error:
                raise BfexportError(f"{path}:{number}: cannot decompress ({error})") from None
            if not raw:
                return
            if len(raw) > _MAX_LINE_BYTES:
                raise _line_too_long(path, number)
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise BfexportError(f"{path}:{number}: invalid UTF-8 (byte {error.start + 1} of the line)") from None
            if len(line) > MAX_CHARS:
                raise _line_too_long(path, number)
            yield number, line


def _line_too_long(path: Path, number: int) -> BfexportError:
    return BfexportError(f"{path}:{number}: line longer than {MAX_CHARS:,} characters")


def _jsonl_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yields one JSON object per non-blank line."""
    for number, line in _lines(path):
        if not line.strip():
            continue
        source = f"{path}:{number}"
        try:
            row = loads_json(line, source)
        except json.JSONDecodeError as error:
            raise BfexportError(f"{source}: invalid JSON ({error.msg} at column {error.colno})") from None
        if not isinstance(row, dict):
            raise BfexportError(f"{source}: expected a JSON object, found {_json_type(row)}")
        yield source, row


def _csv_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yields one dict per CSV record; the first record is the header and must name `text`."""
    csv.field_size_limit(max(csv.field_size_limit(), MAX_CHARS))
    reader = csv.reader(line for _, line in _lines(path))
    records = _csv_records(path, reader)
    header_line, header = next(records, (1, None))
    if header is None:
        return
    header = [name.strip() for name in header]
    if "text" not in header:
        raise BfexportError(f"{path}:{header_line}: no 'text' column in the CSV header (found: {', '.join(header)})")
    for line, record in records:
        source = f"{path}:{line}"
        if len(record) != len(header):
            raise BfexportError(
                f"{source}: {len(record)} fields but the header has {len(header)} (quote texts containing commas)"
            )
        yield source, dict(zip(header, record, strict=True))


def _csv_records(path: Path, reader: Any) -> Iterator[tuple[int, list[str]]]:
    """Yields (first line of the record, fields), skipping blank lines."""
    first_line = 1
    while True:
        try:
            record = next(reader, None)
        except csv.Error as error:
            raise BfexportError(f"{path}:{reader.line_num}: bad CSV ({error})") from None
        if record is None:
            return
        if record:
            yield first_line, record
        first_line = reader.line_num + 1


def _dataset_rows(path: Path, split: str | None) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Yields the rows of a dataset saved with `datasets.save_to_disk`; ClassLabel ids become names."""
    try:
        import datasets
    except ImportError:
        raise BfexportError(
            f"{path}: is a directory; reading a saved Hugging Face dataset needs `pip install datasets`"
        ) from None
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as error:  # datasets raises several types for "not a saved dataset"
        raise BfexportError(f"{path}: not a dataset saved with save_to_disk ({error})") from None
    name = str(path)
    if isinstance(loaded, datasets.DatasetDict):
        split = split or "train"
        if split not in loaded:
            raise BfexportError(f"{path}: no split '{split}' (splits: {', '.join(loaded)})")
        loaded, name = loaded[split], f"{path}[{split}]"
    if "text" not in loaded.column_names:
        raise BfexportError(f"{name}: no 'text' column (found: {', '.join(loaded.column_names)})")
    label_feature = loaded.features.get("label")
    for index, row in enumerate(loaded):
        if isinstance(label_feature, datasets.ClassLabel) and isinstance(row["label"], int) and row["label"] >= 0:
            row = {**row, "label": label_feature.int2str(row["label"])}
        yield f"{name}:{index + 1}", row


def _example(row: Mapping[str, Any], source: str, require_labels: bool) -> Example:
    """Validates one row and turns it into an Example."""
    if "text" not in row:
        raise BfexportError(f"{source}: missing 'text'")
    text = row["text"]
    if not isinstance(text, str):
        raise BfexportError(f"{source}: 'text' must be a string, found {_json_type(text)}")
    if not text.strip():
        raise BfexportError(f"{source}: empty text")
    if len(text) > MAX_CHARS:
        raise BfexportError(f"{source}: text longer than {MAX_CHARS:,} characters")
    label = _label(row.get("label"), source)
    for name, value in (("text", text), ("label", label)):
        if value is not None and not is_utf8(value):
            raise BfexportError(f"{source}: '{name}' holds a lone surrogate (an escape such as \\ud800 that is "
                                "not a character)")
    if label is None and require_labels:
        raise BfexportError(f"{source}: missing label")
    others = () if label is not None else tuple(str(key) for key in row if key not in ("text", "label"))
    return Example(text=text, label=label, source=source, other_fields=others)


def _label(value: Any, source: str) -> str | None:
    """A label name or integer id as a string; None for a missing or blank label."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise BfexportError(f"{source}: label must be a string or an integer, found {_json_type(value)}")


def _json_type(value: Any) -> str:
    """Names a parsed value's type the way a JSON user would."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def label_ids(examples: Sequence[Example], labels: Sequence[str]) -> np.ndarray:
    """Maps label names to int64 class ids (their index in `labels`).

    Numbers are names too: a model whose labels are "0", "1" reads them, but a number is never
    taken as a class index into named labels, since nothing says the data numbers the classes
    in the model's order.
    """
    index = {name: i for i, name in enumerate(labels)}
    return np.array([_label_id(example, index, labels) for example in examples], dtype=np.int64)


def _label_id(example: Example, index: Mapping[str, int], labels: Sequence[str]) -> int:
    label = example.label
    if label is None:
        raise BfexportError(f"{example.source}: missing label")
    if label in index:
        return index[label]
    known = ", ".join(labels[:5]) + (", ..." if len(labels) > 5 else "")
    if label.lstrip("-").isdigit():
        raise BfexportError(f"{example.source}: label {label} is a number, but this model's labels are names "
                            f"({known}); write the label names, not class indices")
    raise BfexportError(f"{example.source}: unknown label '{label}' (known labels: {known})")


def unlabelled_note(examples: Sequence[Example], path: str | Path) -> str | None:
    """Says why data with labels in it is read as unlabelled, instead of not a word: some rows
    lack a label, or no row has a `label` but the rows have other fields (one may be the label
    under another name)."""
    missing = sum(e.label is None for e in examples)
    if 0 < missing < len(examples):
        return f"{path}: {missing:,} of {len(examples):,} rows have no label; read as unlabelled"
    if not missing:
        return None
    others = sorted({name for e in examples for name in e.other_fields})
    if not others:
        return None
    return (f"{path}: no row has a 'label' field (other fields: {', '.join(others[:10])}); read as unlabelled. "
            "Name the label column 'label' to use it")


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8000) -> tokenizers.Tokenizer:
    """Trains a lowercase WordPiece tokenizer; [PAD] is id 0 and [UNK] id 1. Same texts, same vocab.

    The Rust trainer numbers the "##c" continuation pieces in hash-map order, which changes
    merge tie-breaks and so the vocabulary from run to run. Declaring every "##c" up front,
    sorted, as a special token of the trainer makes training deterministic; the result is
    rebuilt so that only [PAD] and [UNK] stay special.
    """
    texts = list(texts)
    draft = _bert_tokenizer(models.WordPiece(unk_token=UNK_TOKEN))
    seen = set().union(*(draft.normalizer.normalize_str(text) for text in texts))
    chars = sorted(c for c in seen if not c.isspace())
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD_TOKEN, UNK_TOKEN, *(f"##{c}" for c in chars)],
        show_progress=False,
    )
    draft.train_from_iterator(texts, trainer)
    vocab = draft.get_vocab(with_added_tokens=False)
    tokenizer = _bert_tokenizer(models.WordPiece(vocab=vocab, unk_token=UNK_TOKEN))
    tokenizer.add_special_tokens([PAD_TOKEN, UNK_TOKEN])
    return tokenizer


def _bert_tokenizer(model: models.WordPiece) -> tokenizers.Tokenizer:
    """A tokenizer around `model` with BERT's lowercasing, accent stripping and word splitting."""
    tokenizer = tokenizers.Tokenizer(model)
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def load_tokenizer(path: str | Path, vocab_size: int | None = None) -> tokenizers.Tokenizer:
    """Loads a tokenizer.json, checking the [PAD]=0 / [UNK] ids `encode` relies on."""
    return tokenizer_from_str(read_tokenizer_file(path), str(path), vocab_size)


def read_tokenizer_file(path: str | Path) -> str:
    """The text of a tokenizer.json: at most MAX_TOKENIZER_BYTES, UTF-8."""
    path = regular_file(path, "tokenizer file not found")
    if path.stat().st_size > MAX_TOKENIZER_BYTES:
        raise BfexportError(f"{path}: {path.stat().st_size:,} bytes, larger than the {MAX_TOKENIZER_BYTES:,} "
                            "accepted for a tokenizer.json")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise BfexportError(f"{path}: not UTF-8 (byte {error.start + 1}); a tokenizer.json is UTF-8 JSON") from None


def parse_tokenizer(text: str, source: str | Path) -> tokenizers.Tokenizer:
    """tokenizer.json text as a Tokenizer, as it is (no checks of its tokens); a bad file is one line."""
    try:
        return tokenizers.Tokenizer.from_str(text)
    except Exception as error:  # tokenizers raises a bare Exception for bad files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BfexportError(f"{source}: not a valid tokenizer.json ({reason})") from None


def tokenizer_from_str(text: str, source: str = "tokenizer", vocab_size: int | None = None) -> tokenizers.Tokenizer:
    """A tokenizer from its JSON text; padding and truncation stored in it are switched off
    because `encode` does both itself. With vocab_size, every id it can produce must be below it
    (the model's embedding table), so a mismatch fails here and not while serving.

    bfexport's own tokenizers pad with [PAD] = 0 and have an [UNK] for texts without tokens; an
    imported one names its padding token in its padding settings and adds special tokens
    ([CLS] ... [SEP]) through its post-processor, so no row is ever empty."""
    if len(text) > MAX_TOKENIZER_BYTES:
        raise BfexportError(f"{source}: tokenizer of {len(text):,} characters, larger than the "
                            f"{MAX_TOKENIZER_BYTES:,} accepted")
    tokenizer = parse_tokenizer(text, source)
    padding = tokenizer.padding
    if padding is not None:
        if tokenizer.token_to_id(padding["pad_token"]) != padding["pad_id"]:
            raise BfexportError(f"{source}: the padding token {padding['pad_token']!r} is not id {padding['pad_id']}")
        if tokenizer.token_to_id(UNK_TOKEN) is None and not tokenizer.num_special_tokens_to_add(False):
            raise BfexportError(f"{source}: tokenizer needs an {UNK_TOKEN} token or a post-processor adding "
                                "special tokens (an empty text must give a token)")
    elif tokenizer.token_to_id(PAD_TOKEN) != 0 or tokenizer.token_to_id(UNK_TOKEN) is None:
        raise BfexportError(f"{source}: tokenizer needs {PAD_TOKEN} as id 0 and an {UNK_TOKEN} token")
    if vocab_size is not None:
        top = max(tokenizer.get_vocab(with_added_tokens=True).values())
        if top >= vocab_size:
            raise BfexportError(f"{source}: the tokenizer has ids up to {top} but the model's vocab_size is "
                                f"{vocab_size}; is this the model's tokenizer?")
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def encode(tokenizer: tokenizers.Tokenizer, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask, int64 [batch, longest row <= max_length], right-padded with 0.

    A text with no tokens becomes a single [UNK] so that no row is all padding (which would
    make mean pooling divide by zero).
    """
    unk_id = tokenizer.token_to_id(UNK_TOKEN)
    return pad([ids or [unk_id] for ids in token_ids(tokenizer, texts, max_length)])


def token_ids(tokenizer: tokenizers.Tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """At most max_length token ids per text, tokenizing only a prefix of a long text.

    A tokenizer with a post-processor (an imported one) gets its special tokens as transformers
    adds them with truncation=True, max_length=max_length: the text's first max_length - n ids,
    then the n special tokens around them ([CLS] ... [SEP]), so the final [SEP] stays.

    A prefix yields the same first tokens as the whole text once enough of them come from words
    before its last word (the one the cut may split); until then the prefix doubles. So a
    1M-character row costs about CHARS_PER_TOKEN * max_length characters of tokenizing.
    """
    if max_length < 1:
        raise BfexportError(f"max_length must be at least 1, got {max_length}")
    special = tokenizer.num_special_tokens_to_add(False)
    if special:
        keep = max(0, max_length - special)
        rows = _text_ids(tokenizer, texts, keep, max_length)
        return [tokenizer.post_process(row).ids[:max_length] for row in rows]
    return [row.ids for row in _text_ids(tokenizer, texts, max_length, max_length)]


def _text_ids(tokenizer: tokenizers.Tokenizer, texts: Sequence[str], keep: int,
              max_length: int) -> list[tokenizers.Encoding]:
    """Each text's encoding without special tokens, cut to its first `keep` tokens."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise BfexportError(f"text {i}: expected a string, got {type(text).__name__}")
    rows: list[tokenizers.Encoding] = [tokenizers.Encoding() for _ in texts]
    pending, chars = list(range(len(texts))), CHARS_PER_TOKEN * max_length
    while pending:
        prefixes = [texts[i][:chars] for i in pending]
        for i, prefix in zip(pending, prefixes, strict=True):
            if not is_utf8(prefix):
                raise BfexportError(f"text {i}: holds a lone surrogate (not a character; UTF-8 cannot encode it)")
        retry = []
        encodings = tokenizer.encode_batch(prefixes, add_special_tokens=False)
        for i, prefix, encoding in zip(pending, prefixes, encodings, strict=True):
            words = encoding.word_ids
            if len(prefix) == len(texts[i]) or (len(words) > keep and (keep == 0 or (
                    words[keep - 1] is not None and words[keep - 1] != words[-1]))):
                encoding.truncate(keep)
                rows[i] = encoding
            else:
                retry.append(i)
        pending, chars = retry, 2 * chars
    return rows


def pad(rows: Sequence[Sequence[int] | np.ndarray], width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token rows with id 0 to `width` (default: the longest row): ids and mask, int64."""
    width = width or max((len(row) for row in rows), default=0)
    input_ids = np.zeros((len(rows), width), dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


def batches(
    examples: Sequence[Example], batch_size: int, *, shuffle: bool = False, seed: int = 0
) -> Iterator[list[Example]]:
    """Yields consecutive batches (the last may be smaller); shuffling is reproducible from `seed`."""
    if batch_size < 1:
        raise BfexportError(f"batch_size must be at least 1, got {batch_size}")
    order = list(range(len(examples)))
    if shuffle:
        random.Random(seed).shuffle(order)
    for start in range(0, len(order), batch_size):
        yield [examples[i] for i in order[start : start + batch_size]]
