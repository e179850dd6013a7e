"""Long texts are cut before tokenizing, with exactly the tokens tokenizing them whole would give."""

from __future__ import annotations

import random

from bfexport.data import CHARS_PER_TOKEN, UNK_TOKEN, encode


class Recording:
    """A tokenizer that notes the longest string it was asked to tokenize."""

    def __init__(self, tokenizer) -> None:  # type: ignore[no-untyped-def]
        self.tokenizer, self.longest = tokenizer, 0

    def encode_batch(self, texts, **kwargs):  # type: ignore[no-untyped-def]
        self.longest = max([self.longest, *map(len, texts)])
        return self.tokenizer.encode_batch(texts, **kwargs)

    def token_to_id(self, token: str) -> int:
        return int(self.tokenizer.token_to_id(token))

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]  # the rest (post-processing) as is
        return getattr(self.tokenizer, name)


def whole(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:  # type: ignore[no-untyped-def]
    unk = tokenizer.token_to_id(UNK_TOKEN)
    return [e.ids[:max_length] or [unk] for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


def rows(ids, mask) -> list[list[int]]:  # type: ignore[no-untyped-def]
    return [list(r[m.astype(bool)]) for r, m in zip(ids, mask, strict=True)]


def test_a_million_character_row_tokenizes_a_prefix(tokenizer) -> None:
    text = "a library for parsing json documents quickly " * 22_000  # about 1M characters
    recording = Recording(tokenizer)
    ids, mask = encode(recording, [text, "short"], 32)
    assert recording.longest <= CHARS_PER_TOKEN * 32
    assert rows(ids, mask) == whole(tokenizer, [text, "short"], 32)


def test_prefixes_give_the_whole_texts_tokens(tokenizer) -> None:
    rng = random.Random(0)
    words = ["json", "x", "libraries", "space", "ships", "!!", "über", "ab" * 60, "", "\t", "日本"]
    texts = [" " * 5000 + "json " * 40, "x" * 3000 + " game", "spaceships" * 100, "a" + " " * 300 + "b c d"]
    texts += [" ".join(rng.choice(words) for _ in range(rng.randint(1, 400))) or "x" for _ in range(60)]
    for max_length in (1, 3, 8, 32):
        recording = Recording(tokenizer)
        assert rows(*encode(recording, texts, max_length)) == whole(tokenizer, texts, max_length)
