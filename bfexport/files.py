"""Writing outputs so a failure or Ctrl-C never leaves a half-written file or directory.

Outputs are built beside their destination and renamed into place. Ctrl-C or an error removes
the temporary copy; SIGKILL cannot be caught, so it may leave a hidden `.NAME.*.tmp` beside the
destination, but never a partial NAME. A write error (disk full, file size limit) becomes one
line naming the destination.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bfexport.errors import BfexportError


def _parent(path: Path) -> Path:
    parent = path.resolve().parent
    if not parent.is_dir():
        raise BfexportError(f"{path}: parent directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise BfexportError(f"{path}: directory {parent} is not writable")
    return parent


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds."""
    path = Path(path)
    if path.is_dir():
        raise BfexportError(f"{path}: is a directory, expected a file path")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=_parent(path))
    os.close(fd)
    try:
        with _write_errors(path):
            yield Path(tmp)
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, force: bool = True) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; swap it into place only if the block succeeds."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BfexportError(f"{path}: exists and is not a directory")
    if path.exists() and not force:
        raise BfexportError(f"{path}: already exists (use --force to replace it)")
    old = path.with_name(f".{path.name}.old")  # the previous directory while the new one moves in
    if old.is_dir() and not path.exists():
        os.replace(old, path)  # a run killed between the two renames below: put the previous one back
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=_parent(path)))
    try:
        with _write_errors(path):
            yield tmp
            if path.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.is_dir() and not path.exists():
            os.replace(old, path)
        raise


@contextlib.contextmanager
def _write_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        raise BfexportError(f"{path}: could not write ({e.strerror or e})") from e


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


MAX_JSON_DEPTH = 64
"""Deepest nesting accepted in a JSON document: bfexport's own files nest three levels; a
deeper one is refused on one line rather than crashing a recursive reader later."""


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise BfexportError(f"{path}: file not found")
    try:
        return loads_json(path.read_text(encoding="utf-8"), str(path))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BfexportError(f"{path}: not valid JSON ({e})") from None


def loads_json(text: str, source: str) -> Any:
    """json.loads, refusing on one line naming `source` what would otherwise crash later:
    nesting deeper than MAX_JSON_DEPTH, and integers longer than Python converts to int
    (named by their path). Syntax errors stay json.JSONDecodeError, for the caller to word."""
    limit = sys.get_int_max_str_digits() or 4300  # 0 means unlimited; 4300 is Python's default
    try:
        value = json.loads(text, parse_int=lambda s: _LongInteger(s) if len(s) > limit else int(s))
    except RecursionError:
        raise _too_deep(source) from None
    for path, depth, node in _nodes(value):
        if depth > MAX_JSON_DEPTH:
            raise _too_deep(source)
        if isinstance(node, _LongInteger):
            raise BfexportError(f"{source}: {path or 'the document'} is an integer of {node.digits:,} digits "
                                f"(at most {limit:,} are read)")
    return value


def is_utf8(text: str) -> bool:
    """False for a string holding lone surrogates (JSON can write them, UTF-8 cannot)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _too_deep(source: str) -> BfexportError:
    return BfexportError(f"{source}: JSON nested deeper than {MAX_JSON_DEPTH} levels")


class _LongInteger:
    """An integer literal left as digits: converting it would raise (or take quadratic time)."""

    def __init__(self, literal: str) -> None:
        self.digits = len(literal.lstrip("-"))


def _nodes(value: Any) -> Iterator[tuple[str, int, Any]]:
    """(path, nesting level, value) of every node, without recursion: `labels[2]`, `caps.layer`."""
    stack = [("", 1, value)]
    while stack:
        path, depth, node = stack.pop()
        yield path, depth, node
        if isinstance(node, dict):
            stack.extend((f"{path}.{k}" if path else str(k), depth + 1, v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", depth + 1, v) for i, v in reversed(list(enumerate(node))))
