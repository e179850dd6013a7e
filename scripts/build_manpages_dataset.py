"""Build man-sections, a long-input dataset: the body of an English manual page -> its manual section.

Input: the roff sources of the manual pages installed under /usr/share/man/man{1,2,3,5,7,8}
(gzipped or not; locale directories such as /usr/share/man/de are not read).

Rows: one per page file that is not a `.so` redirect. text = the page after its NAME section (so the
page's own name and one-line summary are not given away), with roff comments and `.TH` dropped,
request lines reduced to their arguments, font and character escapes removed, whitespace collapsed,
truncated to --max-chars characters; pages with fewer than --min-chars left and exact duplicate texts
are dropped. label = the section (`3pm`, `3ssl` -> 3) with its name, e.g. `2-system-calls`.
At most --per-prefix-cap pages per name prefix, then --per-class-cap rows per section (seeded),
split 80/10/10 with every page of one name prefix (`git-log`, `git-push` -> `git`) in the same split,
as build_debian_dataset.py splits by source.

Output: {train,validation,test}.jsonl.gz (gzip mtime 0, byte-identical reruns over the same pages) and DATA.md.
"""

from __future__ import annotations

import argparse
import gzip
import random
import re
import sys
from pathlib import Path

from build_debian_dataset import Row, count_table, sample, split_by_source, write_splits

REBUILD_COMMAND = "python scripts/build_manpages_dataset.py --man /usr/share/man --out examples/man-sections"
SECTIONS = {"1": "1-user-commands", "2": "2-system-calls", "3": "3-library-calls", "5": "5-file-formats",
            "7": "7-miscellanea", "8": "8-administration"}
ESCAPES = [(re.compile(r"\\f(\(..|\[[^]]*\]|.)"), ""), (re.compile(r"\\s[+-]?\d+"), ""),
           (re.compile(r"\\\(..|\\\[[^]]*\]|\\\*(\(..|\[[^]]*\]|.)"), " "), (re.compile(r"\\[-e]"), "-"),
           (re.compile(r"\\."), "")]


def page_text(roff: str) -> str | None:
    """The readable text of a page after its NAME section; None for a `.so` redirect or no NAME."""
    lines = [line for line in roff.splitlines() if not line.startswith(('.\\"', "'\\\"", ".TH", "'TH"))]
    if any(line.startswith(".so ") for line in lines[:3]):
        return None
    out, section = [], None
    for line in lines:
        if line.startswith((".SH", ".Sh")):
            section = line[3:].strip().strip('"').upper()
        if section is None or section == "NAME":
            continue
        if line.startswith((".", "'")):
            line = line.split(None, 1)[1] if " " in line.strip() else ""
            line = line.replace('"', "")
        for pattern, replacement in ESCAPES:
            line = pattern.sub(replacement, line)
        out.append(line)
    return " ".join(" ".join(out).split()) if section is not None else None


def load_rows(man: Path, max_chars: int, min_chars: int) -> list[Row]:
    rows: list[Row] = []
    seen: set[str] = set()
    for number, label in SECTIONS.items():
        for path in sorted((man / f"man{number}").glob("*")):
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            text = page_text(raw.decode("utf-8", errors="replace"))
            if text is None or len(text) < min_chars:
                continue
            text = text[:max_chars].rstrip()
            if text in seen:
                continue
            seen.add(text)
            name = path.name.removesuffix(".gz")
            prefix = re.split(r"[-_:.]", name, maxsplit=1)[0].lower()
            rows.append(Row(name, prefix, label, text))
    return rows


def thin_prefixes(rows: list[Row], cap: int, rng: random.Random) -> list[Row]:
    """At most `cap` seeded-random pages per name prefix, so one suite (git-*, openssl-*) cannot fill a
    class or, being one split group, unbalance the splits."""
    rows = sorted(rows, key=lambda r: r.package)
    rng.shuffle(rows)
    kept: dict[str, int] = {}
    out = []
    for row in rows:
        kept[row.source] = kept.get(row.source, 0) + 1
        if kept[row.source] <= cap:
            out.append(row)
    return out


def data_md(splits: dict[str, list[Row]], args: argparse.Namespace) -> str:
    words = [len(r.text.split()) for rows in splits.values() for r in rows]
    return f"""# man-sections

Long-input text classification: the body of an English manual page -> its manual section
({len(SECTIONS)} classes). Mean {sum(words) / len(words):.0f} words per text (truncated to {args.max_chars}
characters). Files: `train.jsonl.gz`, `validation.jsonl.gz`, `test.jsonl.gz`, one JSON object per
line: `{{"text": ..., "label": ...}}`.

## Source

The manual pages installed under `/usr/share/man/man{{1,2,3,5,7,8}}` of the build machine (Debian
bookworm packages: man-pages, coreutils, perl, openssl, git and the rest of its installed set); each
page is distributed under its package's licence (`/usr/share/doc/PACKAGE/copyright`). The rows depend
on which packages are installed: rebuild on another machine gives a different sample.

## Rows and sampling

- text: the page after its NAME section, roff requests reduced to their arguments, escapes removed,
  whitespace collapsed, truncated to {args.max_chars} characters; `.so` redirects, pages under
  {args.min_chars} characters and exact duplicates are dropped.
- At most {args.per_prefix_cap} pages per name prefix, then at most {args.per_class_cap} rows per section
  (seed {args.seed}), split ~80/10/10 per label with
  every page of one name prefix in the same split.

{count_table(splits)}

## Rebuild

```
{REBUILD_COMMAND}
```
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--man", type=Path, default=Path("/usr/share/man"), help="manual page root")
    parser.add_argument("--out", type=Path, default=Path("examples/man-sections"), help="output directory")
    parser.add_argument("--per-class-cap", type=int, default=300, help="most rows per class over all splits")
    parser.add_argument("--per-prefix-cap", type=int, default=3, help="most pages per name prefix")
    parser.add_argument("--max-chars", type=int, default=3000, help="truncate texts to this many characters")
    parser.add_argument("--min-chars", type=int, default=400, help="drop pages shorter than this")
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling and splitting")
    args = parser.parse_args(argv)
    if not args.man.is_dir():
        sys.exit(f"error: {args.man} is not a directory")
    rng = random.Random(args.seed)
    rows = thin_prefixes(load_rows(args.man, args.max_chars, args.min_chars), args.per_prefix_cap, rng)
    rows = sample(rows, len(SECTIONS), args.per_class_cap, rng)
    splits = split_by_source(rows, rng)
    write_splits(args.out, splits)
    (args.out / "DATA.md").write_text(data_md(splits, args), encoding="utf-8")


if __name__ == "__main__":
    main()
