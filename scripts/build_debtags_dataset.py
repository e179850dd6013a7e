"""Build debian-use, a short-input dataset: a Debian package's one-line description -> its debtags `use::` facet.

Input: the `*_Packages*` files of an apt lists directory (normally /var/lib/apt/lists; bookworm's carry
`Description:` (the short description) and `Tag:` for most packages). No Translation-en is needed.

Rows: one per binary package whose tags hold exactly one `use::` value (a package tagged
use::editing and use::viewing says two things and is dropped); text = the short description,
whitespace collapsed; exact duplicate texts dropped (first wins). The --top-labels most common
values are kept, at most --per-class-cap rows each, and split 80/10/10 by source package as in
build_debian_dataset.py.

Output: {train,validation,test}.jsonl.gz (gzip mtime 0, byte-identical reruns) and DATA.md.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from build_debian_dataset import (
    Row,
    count_table,
    find_lists,
    list_dates,
    read_list_file,
    sample,
    split_by_source,
    stanzas,
    write_splits,
)

REBUILD_COMMAND = "python scripts/build_debtags_dataset.py --lists /var/lib/apt/lists --out examples/debian-use"


def facet_values(tags: str, facet: str) -> list[str]:
    """The values of one debtags facet: 'use::editing, role::program' -> ['editing'] for 'use'."""
    prefix = facet + "::"
    return [t.strip()[len(prefix):] for t in tags.replace("\n", " ").split(",") if t.strip().startswith(prefix)]


def load_rows(lists: Path, facet: str) -> list[Row]:
    """One row per package name with exactly one value of `facet` and a short description."""
    rows: dict[str, Row] = {}
    seen: set[str] = set()
    for path in find_lists(lists, "Packages"):
        for fields in stanzas(read_list_file(path)):
            package, text = fields.get("Package"), " ".join(fields.get("Description", "").split())
            values = facet_values(fields.get("Tag", ""), facet)
            if not package or package in rows or len(values) != 1 or not text or text in seen:
                continue
            seen.add(text)
            rows[package] = Row(package, fields.get("Source", package).split()[0], values[0], text)
    return list(rows.values())


def data_md(splits: dict[str, list[Row]], dates: list[str], args: argparse.Namespace) -> str:
    words = [len(r.text.split()) for rows in splits.values() for r in rows]
    return f"""# debian-use

Short-input text classification: the one-line description of a Debian package -> the value of
its debtags `{args.facet}::` facet ({len({r.label for rows in splits.values() for r in rows})} classes).
Mean {sum(words) / len(words):.1f} words per text. Files: `train.jsonl.gz`, `validation.jsonl.gz`,
`test.jsonl.gz`, one JSON object per line: `{{"text": ..., "label": ...}}`.

## Source

The `main` binary-amd64 `Packages` apt lists of Debian bookworm: the `Description:` field (the
short description) and the `Tag:` field (debtags, https://wiki.debian.org/Debtags). Package
descriptions are written by Debian maintainers and distributed with the archive under its terms
(https://www.debian.org/legal/licenses/). Dates of the lists (InRelease `Date:`):

{chr(10).join(f"- {d}" for d in dates)}

## Rows and sampling

- Packages whose tags hold exactly one `{args.facet}::` value; exact duplicate texts dropped.
- The {args.top_labels} most common values, at most {args.per_class_cap} rows each (seed {args.seed}),
  split ~80/10/10 per label with all packages of one source package in the same split.

{count_table(splits)}

## Rebuild

```
{REBUILD_COMMAND}
```
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lists", type=Path, default=Path("/var/lib/apt/lists"), help="apt lists directory")
    parser.add_argument("--out", type=Path, default=Path("examples/debian-use"), help="output directory")
    parser.add_argument("--facet", default="use", help="debtags facet whose value is the label")
    parser.add_argument("--top-labels", type=int, default=8, help="number of facet values (classes) to keep")
    parser.add_argument("--per-class-cap", type=int, default=400, help="most rows per class over all splits")
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling and splitting")
    args = parser.parse_args(argv)
    if not args.lists.is_dir():
        sys.exit(f"error: {args.lists} is not a directory")
    rng = random.Random(args.seed)
    rows = sample(load_rows(args.lists, args.facet), args.top_labels, args.per_class_cap, rng)
    splits = split_by_source(rows, rng)
    write_splits(args.out, splits)
    (args.out / "DATA.md").write_text(data_md(splits, list_dates(args.lists), args), encoding="utf-8")


if __name__ == "__main__":
    main()
