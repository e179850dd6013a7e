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


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise BfexportError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BfexportError(f"{path}: not valid JSON ({e})") from None
