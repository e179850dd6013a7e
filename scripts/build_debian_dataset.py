"""Build the debian-sections text-classification dataset from local apt lists.

Input: the `*_Packages*` and `*_Translation-en*` files in an apt lists directory
(normally /var/lib/apt/lists, fetched with `apt-get -o Acquire::Languages=en update`).

Row construction:
- Each binary package in a Packages file gives a name, a source package and a
  section; the label is the last part of the section (`contrib/net` -> `net`).
- Its description is looked up in Translation-en by the `Description-md5` the
  Packages stanza carries (an exact join: the same package name can have several
  descriptions across suites). Packages files are read in the order main suite,
  -updates, -security; the first stanza for a package name wins.
- text = short description, then one line per long-description paragraph
  (" ." separates paragraphs; the lines of a paragraph are joined with a space and
  runs of whitespace collapse to one space), truncated to --max-chars characters.
  Packages without a long description are skipped, and so are exact duplicate texts
  (first wins), so the same text never appears twice or with two labels.

Sampling: keep the --top-sections largest sections, draw at most --per-class-cap rows
per section (seeded), then split 80/10/10 by source package: all binary packages built
from one source land in the same split (libfoo1 and libfoo-dev share most of their
text, so splitting them apart would leak test text into train). Source groups are
visited in seeded random order and each goes to the split furthest below its
per-label target, which keeps the splits stratified by label.

Output: {train,validation,test}.jsonl.gz with {"text": ..., "label": ...} per line,
gzipped with mtime=0 so reruns over the same lists are byte-identical, and DATA.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

APT_HELPER = Path("/usr/lib/apt/apt-helper")
SPLITS = (("train", 0.8), ("validation", 0.1), ("test", 0.1))
REBUILD_COMMAND = "python scripts/build_debian_dataset.py --lists /var/lib/apt/lists --out examples/debian-sections"


@dataclass(frozen=True)
class Row:
    """One dataset candidate: a binary package, the source it is built from, its label and text."""

    package: str
    source: str
    label: str
    text: str


def read_list_file(path: Path) -> str:
    """Returns the decompressed text of one apt list file (apt stores them lz4-compressed)."""
    if path.suffix not in (".lz4", ".gz", ".xz", ".zst"):
        return path.read_text(encoding="utf-8")
    if APT_HELPER.exists():
        command = [str(APT_HELPER), "cat-file", str(path)]
    elif path.suffix == ".lz4" and shutil.which("lz4"):
        command = ["lz4", "-dc", str(path)]
    else:
        sys.exit(f"error: cannot decompress {path}: need {APT_HELPER} or the lz4 command")
    return subprocess.run(command, check=True, capture_output=True).stdout.decode("utf-8")


def stanzas(text: str) -> Iterator[dict[str, str]]:
    """Parses deb822 text into dicts; continuation lines are kept joined with '\\n'."""
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and key is not None:
                fields[key] += "\n" + line
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if fields:
            yield fields


def suite_rank(path: Path) -> tuple[int, str]:
    """Orders list files main suite first, then -updates, then -security, then any other suite."""
    suite = path.name.partition("_dists_")[2].split("_")[0]
    if "-" not in suite:
        return (0, path.name)
    return ({"updates": 1, "security": 2}.get(suite.rsplit("-", 1)[1], 3), path.name)


def find_lists(lists: Path, kind: str) -> list[Path]:
    """Returns the Packages or Translation-en files of the lists directory, in suite order."""
    pattern = re.compile(rf"_{kind}(\.(lz4|gz|xz|zst))?$")
    files = [p for p in lists.iterdir() if p.is_file() and pattern.search(p.name)]
    if not files:
        sys.exit(
            f"error: no *_{kind} files in {lists}; on Debian run "
            "`sudo apt-get -o Acquire::Languages=en update` first (or pass --lists)"
        )
    return sorted(files, key=suite_rank)


def description_text(description: str) -> str | None:
    """Short description plus one line per paragraph of the long one; None if there is no long one."""
    short, *long_lines = description.split("\n")
    paragraphs: list[list[str]] = [[]]
    for line in long_lines:
        if line.strip() == ".":
            paragraphs.append([])
        else:
            paragraphs[-1].append(line.strip())
    body = [" ".join(" ".join(p).split()) for p in paragraphs]
    body = [p for p in body if p]
    if not body:
        return None
    return "\n".join([" ".join(short.split()), *body])


def load_rows(lists: Path, max_chars: int) -> list[Row]:
    """Joins Packages and Translation-en into one row per package name with a long description."""
    translations: dict[str, str] = {}
    for path in find_lists(lists, "Translation-en"):
        for fields in stanzas(read_list_file(path)):
            if "Description-md5" in fields and "Description-en" in fields:
                translations.setdefault(fields["Description-md5"], fields["Description-en"])
    rows: dict[str, Row] = {}
    seen_texts: set[str] = set()
    for path in find_lists(lists, "Packages"):
        for fields in stanzas(read_list_file(path)):
            package = fields.get("Package")
            if not package or package in rows or "Section" not in fields:
                continue
            description = translations.get(fields.get("Description-md5", ""))
            text = description_text(description) if description else None
            if text is None:
                continue
            text = text[:max_chars].rstrip()
            if text in seen_texts:
                continue
            seen_texts.add(text)
            source = fields.get("Source", package).split()[0]
            label = fields["Section"].split("/")[-1]
            rows[package] = Row(package, source, label, text)
    return list(rows.values())


def sample(rows: list[Row], top_sections: int, cap: int, rng: random.Random) -> list[Row]:
    """Keeps the largest sections and at most `cap` seeded-random rows of each."""
    counts = Counter(row.label for row in rows)
    keep = sorted(counts, key=lambda label: (-counts[label], label))[:top_sections]
    chosen: list[Row] = []
    for label in sorted(keep):
        members = sorted((r for r in rows if r.label == label), key=lambda r: r.package)
        rng.shuffle(members)
        chosen.extend(members[:cap])
    return chosen


def split_by_source(rows: list[Row], rng: random.Random) -> dict[str, list[Row]]:
    """Splits ~80/10/10 per label, keeping each source package's rows in one split."""
    per_label = Counter(row.label for row in rows)
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        groups[row.source].append(row)
    order = sorted(groups)
    rng.shuffle(order)
    filled: dict[str, Counter[str]] = {name: Counter() for name, _ in SPLITS}
    splits: dict[str, list[Row]] = {name: [] for name, _ in SPLITS}
    for source in order:
        group = groups[source]

        def deficit(split: tuple[str, float], group: list[Row] = group) -> float:
            name, share = split
            return sum(share * per_label[r.label] - filled[name][r.label] for r in group)

        name = max(SPLITS, key=deficit)[0]
        splits[name].extend(group)
        filled[name].update(r.label for r in group)
    for members in splits.values():
        rng.shuffle(members)
    return splits


def write_jsonl_gz(path: Path, rows: list[Row]) -> None:
    """Writes {"text", "label"} lines, gzipped without a timestamp or file name (reproducible)."""
    lines = "".join(json.dumps({"text": r.text, "label": r.label}, ensure_ascii=False) + "\n" for r in rows)
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
        out.write(lines.encode("utf-8"))


def write_splits(out: Path, splits: dict[str, list[Row]]) -> None:
    """Writes NAME.jsonl.gz per split into out (created if absent) and says how many rows each has."""
    out.mkdir(parents=True, exist_ok=True)
    for name, members in splits.items():
        write_jsonl_gz(out / f"{name}.jsonl.gz", members)
        print(f"{name}: {len(members)} rows")


def list_dates(lists: Path) -> list[str]:
    """Returns 'codename: Date' per InRelease file, to record how fresh the source lists were."""
    dates = []
    for path in sorted(lists.glob("*_InRelease"), key=suite_rank):
        text = path.read_text(encoding="utf-8", errors="replace")
        codename = re.search(r"^Codename: *(.+)$", text, re.MULTILINE)
        date = re.search(r"^Date: *(.+)$", text, re.MULTILINE)
        dates.append(f"{codename[1] if codename else path.name}: {date[1] if date else 'unknown'}")
    return dates


def count_table(splits: dict[str, list[Row]]) -> str:
    """A Markdown table of rows per label and split, with totals."""
    labels = sorted({r.label for rows in splits.values() for r in rows})
    counts = {name: Counter(r.label for r in rows) for name, rows in splits.items()}
    table = ["| label | " + " | ".join(splits) + " | total |", "|" + "---|" * (len(splits) + 2)]
    for label in labels + ["**total**"]:
        cells = [sum(c.values()) if label == "**total**" else c[label] for c in counts.values()]
        table.append(f"| {label} | " + " | ".join(map(str, cells)) + f" | {sum(cells)} |")
    return "\n".join(table)


def data_md(splits: dict[str, list[Row]], dates: list[str], args: argparse.Namespace) -> str:
    """Renders DATA.md: source, list dates, per-class counts per split, sampling and rebuild command."""
    labels = sorted({r.label for rows in splits.values() for r in rows})
    table = count_table(splits)
    return f"""# debian-sections

Text classification: the English description of a Debian package -> its archive
section ({len(labels)} classes). Files: `train.jsonl.gz`, `validation.jsonl.gz`,
`test.jsonl.gz`, one JSON object per line: `{{"text": ..., "label": ...}}`.

## Source

The `main` binary-amd64 `Packages` and `i18n/Translation-en` apt lists of Debian
bookworm (+ bookworm-updates, bookworm-security), joined on `Description-md5`.
Package descriptions are written by Debian maintainers and distributed with the
archive under its terms (https://www.debian.org/legal/licenses/).
Dates of the lists (InRelease `Date:`):

{chr(10).join(f"- {d}" for d in dates)}

## Rows and sampling

- text: the short description, then one line per paragraph of the long description
  (whitespace collapsed), truncated to {args.max_chars} characters; packages without a
  long description and exact duplicate texts are dropped.
- label: the last part of `Section:` (`contrib/net` -> `net`).
- The {args.top_sections} largest sections, at most {args.per_class_cap} rows each (seed {args.seed}),
  split ~80/10/10 per label with all packages of one source package in the same split
  (so near-identical texts such as libfoo1 / libfoo-dev never straddle train and test).

{table}

## Rebuild

```
{REBUILD_COMMAND}
```

Reruns over the same lists give byte-identical files (gzip mtime is 0). Refresh the
lists with `sudo apt-get -o Acquire::Languages=en update` (on a bookworm system).
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lists", type=Path, default=Path("/var/lib/apt/lists"), help="apt lists directory")
    parser.add_argument("--out", type=Path, default=Path("examples/debian-sections"), help="output directory")
    parser.add_argument("--top-sections", type=int, default=20, help="number of sections (classes) to keep")
    parser.add_argument("--per-class-cap", type=int, default=1000, help="most rows per class over all splits")
    parser.add_argument("--max-chars", type=int, default=2000, help="truncate texts to this many characters")
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling and splitting")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.lists.is_dir():
        sys.exit(f"error: {args.lists} is not a directory; run `sudo apt-get -o Acquire::Languages=en update` first")
    rng = random.Random(args.seed)
    rows = sample(load_rows(args.lists, args.max_chars), args.top_sections, args.per_class_cap, rng)
    splits = split_by_source(rows, rng)
    write_splits(args.out, splits)
    (args.out / "DATA.md").write_text(data_md(splits, list_dates(args.lists), args), encoding="utf-8")


if __name__ == "__main__":
    main()
