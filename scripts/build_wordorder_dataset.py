"""Build man-wordorder, an order-sensitive dataset: is a manual-page sentence in its words' order, or were
they reordered? (`--perturb swap`: two adjacent words swapped, SentEval's "bigram shift" probe, Conneau et
al. 2018; `--perturb shuffle`: every word shuffled.)

Why: on the topic datasets here (debian-sections, debian-use, man-sections) a bag of words does most of
the work and one head per layer is as good as eight after a fine-tune, so per-input head budgets have
nothing to win back. A bag of words scores 50% here: the label lives in word order, which only
attention can read (the model's one other cross-token path is the final mean pool).

Input: the roff sources under /usr/share/man/man{1,2,3,5,7,8}, read as build_manpages_dataset.py reads
them. Rows: sentences of --min-words to --max-words words made of letters (with , ; : ' - inside or after
a word), split at ". " before a capital letter; exact duplicates dropped; at most --per-page sentences per
page; lowercased and the final period dropped, so neither marks the first or last position. Each sentence
is used once: in order (label `original`) or reordered (label `reordered`), half each, so no text occurs
in both classes. Split ~80/10/10 with every page of one name prefix in the same split.

Output: {train,validation,test}.jsonl.gz (gzip mtime 0) and DATA.md.
"""

from __future__ import annotations

import argparse
import gzip
import random
import re
import sys
from pathlib import Path

from build_debian_dataset import Row, count_table, split_by_source, write_splits
from build_manpages_dataset import SECTIONS, page_text

REBUILD_COMMAND = "python scripts/build_wordorder_dataset.py --man /usr/share/man --perturb {perturb} --out {out}"
PERTURB = {"swap": "two adjacent, different words swapped, SentEval's bigram-shift probe (Conneau et al. 2018)",
           "shuffle": "every word shuffled"}
WORD = re.compile(r"[A-Za-z][A-Za-z'-]*[,;:]?")
SENTENCE_END = re.compile(r"(?<=\.)\s+(?=[A-Z])")


def sentences(text: str, min_words: int, max_words: int) -> list[str]:
    """The prose sentences of a page's text: every word letters only, the last ending in a period."""
    out = []
    for sentence in SENTENCE_END.split(text):
        words = sentence.split()
        if not min_words <= len(words) <= max_words or not words[-1].endswith("."):
            continue
        if all(WORD.fullmatch(w) for w in words[:-1]) and WORD.fullmatch(words[-1][:-1]):
            out.append(" ".join(words))
    return out


def reorder(words: list[str], perturb: str, rng: random.Random) -> list[str] | None:
    """The words with two adjacent, different ones swapped at a seeded-random position ("swap") or all of
    them shuffled ("shuffle"); None when that leaves the order as it was."""
    out = words[:]
    if perturb == "shuffle":
        rng.shuffle(out)
    else:
        positions = [i for i in range(len(words) - 1) if words[i] != words[i + 1]]
        if positions:
            i = rng.choice(positions)
            out[i], out[i + 1] = out[i + 1], out[i]
    return None if out == words else out


def load_rows(man: Path, args: argparse.Namespace, rng: random.Random) -> list[Row]:
    seen: set[str] = set()
    rows: list[Row] = []
    for number in SECTIONS:
        for path in sorted((man / f"man{number}").glob("*")):
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            text = page_text(raw.decode("utf-8", errors="replace"))
            if text is None:
                continue
            name = path.name.removesuffix(".gz")
            prefix = re.split(r"[-_:.]", name, maxsplit=1)[0].lower()
            fresh = [s for s in dict.fromkeys(sentences(text, args.min_words, args.max_words)) if s not in seen]
            rng.shuffle(fresh)
            for sentence in fresh[: args.per_page]:
                seen.add(sentence)
                words = sentence.lower().removesuffix(".").split()
                reordered = reorder(words, args.perturb, rng) if rng.random() < 0.5 else None
                label, body = ("reordered", reordered) if reordered is not None else ("original", words)
                rows.append(Row(name, prefix, label, " ".join(body)))
    return rows


def data_md(splits: dict[str, list[Row]], args: argparse.Namespace) -> str:
    words = [len(r.text.split()) for rows in splits.values() for r in rows]
    return f"""# man-wordorder

Order-sensitive text classification: a sentence of an English manual page, in order (`original`) or
reordered (`reordered`; `--perturb {args.perturb}`: {PERTURB[args.perturb]}). Mean
{sum(words) / len(words):.1f} words per text. A bag of words cannot beat 50% (every sentence occurs once,
in one class); the label is in word order. Files: `train.jsonl.gz`, `validation.jsonl.gz`,
`test.jsonl.gz`, one JSON object per line: `{{"text": ..., "label": ...}}`.

## Source

The manual pages installed under `/usr/share/man/man{{1,2,3,5,7,8}}` of the build machine (Debian
bookworm packages), read as `examples/man-sections` reads them; each page is distributed under its
package's licence (`/usr/share/doc/PACKAGE/copyright`). Rebuilding on another machine gives a different
sample.

## Rows and sampling

- Sentences split at ". " before a capital letter, {args.min_words} to {args.max_words} words, every word
  letters (with ' or - inside, , ; : after), the last ending in a period; exact duplicates dropped; at
  most {args.per_page} seeded-random sentences per page; lowercased, the final period dropped.
- Each sentence is kept in order or, with probability 1/2, reordered; seed {args.seed}.
- Split ~80/10/10 per label with every page of one name prefix (`git-log`, `git-push` -> `git`) in the
  same split.

{count_table(splits)}

## Rebuild

```
{REBUILD_COMMAND.format(perturb=args.perturb, out=args.out)}
```
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--man", type=Path, default=Path("/usr/share/man"), help="manual page root")
    parser.add_argument("--out", type=Path, default=Path("examples/man-wordorder"), help="output directory")
    parser.add_argument("--min-words", type=int, default=8, help="shortest sentence kept, in words")
    parser.add_argument("--max-words", type=int, default=24, help="longest sentence kept, in words")
    parser.add_argument("--per-page", type=int, default=8, help="most sentences taken from one page")
    parser.add_argument("--perturb", choices=sorted(PERTURB), default="swap", help="how a reordered sentence is made")
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling, reordering and splitting")
    args = parser.parse_args(argv)
    if not args.man.is_dir():
        sys.exit(f"error: {args.man} is not a directory")
    rng = random.Random(args.seed)
    splits = split_by_source(load_rows(args.man, args, rng), rng)
    write_splits(args.out, splits)
    (args.out / "DATA.md").write_text(data_md(splits, args), encoding="utf-8")


if __name__ == "__main__":
    main()
