"""Writing outputs so a failure or Ctrl-C never leaves a half-written file or directory, and
checking a command's planned outputs before any work, so nothing the user did not ask to lose is lost.

Outputs are built beside their destination and renamed into place. Ctrl-C or an error removes
the temporary copy; SIGKILL cannot be caught, so it may leave a hidden `.NAME.*.tmp` beside the
destination, but never a partial NAME. A write error (disk full, file size limit) becomes one
line naming the destination. Outputs get the modes open() and mkdir() give under the umask
(temporary files are 0600 / 0700, and a rename would keep that).

What may be replaced (`check_outputs`): a regular file with force; a directory only when it is
empty or holds bfexport's own output of the same kind (DirKind), the latter with force; never a
device, named pipe or socket, never an input of the same run or a path inside or around one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bfexport.errors import BfexportError

REGULAR, DIRECTORY = "a regular file", "a directory"
_KINDS = ((stat.S_ISREG, REGULAR), (stat.S_ISDIR, DIRECTORY), (stat.S_ISFIFO, "a named pipe"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def what_is(path: str | Path) -> str | None:
    """What `path` is, following symbolic links ("a regular file", "a named pipe", ...); None
    when nothing is there."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "a broken symbolic link" if os.path.islink(path) else None
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def regular_file(path: str | Path, missing: str = "file not found") -> Path:
    """`path` if it is a regular file (or a link to one). Anything else is refused before it is
    opened: reading a named pipe blocks forever, a device never ends."""
    path = Path(path)
    what = what_is(path)
    if what is None:
        raise BfexportError(f"{path}: {missing}")
    if what != REGULAR:
        raise BfexportError(f"{path}: is {what}, not a regular file")
    return path


def _umask_mode(*, directory: bool) -> int:
    """The mode mkdir() (0o777) or open() (0o666) gives under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def apply_umask(root: Path) -> None:
    """Give `root` and everything in it the modes mkdir() and open() give under the umask:
    temporary directories are 0700 and some writers (safetensors) make 0600 files, which a
    server or a colleague under another uid could not read."""
    modes = {True: _umask_mode(directory=True), False: _umask_mode(directory=False)}
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(modes[path.is_dir()])


@dataclass(frozen=True)
class DirKind:
    """A kind of directory bfexport writes, recognised by a JSON file it writes there holding
    `key` (equal to `value`, when given), so a directory it did not write is never replaced."""

    name: str  # for messages, with its article: "a checkpoint", "a calibration report"
    marker: str  # "config.json"
    key: str
    value: str | None = None

    def written_in(self, directory: Path) -> bool:
        marker = directory / self.marker
        if what_is(marker) != REGULAR:
            return False
        try:
            obj = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            return False
        return isinstance(obj, dict) and self.key in obj and (self.value is None or obj[self.key] == self.value)


def _empty(directory: Path) -> bool:
    try:
        return not any(directory.iterdir())
    except OSError:
        return False


def _not_ours(where: str | Path, kind: DirKind) -> BfexportError:
    return BfexportError(f"{where}: exists and is not {kind.name} written by bfexport; remove it yourself or "
                         "choose another path")


@dataclass(frozen=True)
class Output:
    """A path a command plans to write: a regular file (kind None) or a directory of `kind`."""

    path: Path
    option: str = ""  # how the user named it ("-o", "--report"), for messages
    kind: DirKind | None = None
    make_parents: bool = False  # a missing parent directory is created (convert, as optimum-cli does)

    @property
    def label(self) -> str:
        return f"{self.option} {self.path}" if self.option else str(self.path)


def check_outputs(outputs: Sequence[Output], inputs: Mapping[str, str | Path | None], *, force: bool) -> None:
    """Refuse, before any work, a planned output that would lose data or fail after the work.

    Always refused: an output that is, contains or sits inside an input (`inputs` maps a name
    such as "MODEL" or "--data" to its path) or another output; anything there that is not a
    regular file (for a file) or a directory (for a directory), devices and pipes included; a
    non-empty directory bfexport did not write; the current directory or one above it; a missing
    (unless make_parents) or read-only parent directory. Refused without force: an existing file,
    or a directory of bfexport's previous output of the same kind.
    """
    named = [(f"the input {name}", Path(p)) for name, p in inputs.items() if p is not None]
    for i, out in enumerate(outputs):
        for name, other in named + [(f"the {o.option or 'other'} output", o.path) for o in outputs[i + 1:]]:
            relation = _overlap(out.path, other)
            if relation:
                raise BfexportError(f"{out.label}: {relation} {name} {other}; choose another path (an output never "
                                    "replaces an input or another output)")
        _check_parent(out)
        _check_existing(out, force)


def _overlap(a: Path, b: Path) -> str | None:
    ra, rb = a.resolve(), b.resolve()
    with contextlib.suppress(OSError):
        if ra == rb or (ra.exists() and rb.exists() and os.path.samefile(ra, rb)):
            return "is"
    if ra in rb.parents:
        return "contains"
    if rb in ra.parents:
        return "is inside"
    return None


def _check_parent(out: Output) -> None:
    parent = out.path.resolve().parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir():
        raise BfexportError(f"{out.label}: {existing} is not a directory")
    if existing != parent and not out.make_parents:
        raise BfexportError(f"{out.label}: parent directory {parent} does not exist")
    if not os.access(existing, os.W_OK):
        raise BfexportError(f"{out.label}: directory {existing} is not writable")


def _check_existing(out: Output, force: bool) -> None:
    what = what_is(out.path)
    if what is None:
        return
    if out.kind is None:
        if what != REGULAR:
            raise BfexportError(f"{out.label}: is {what}; bfexport writes only regular files, give another path")
        if not force:
            raise BfexportError(f"{out.label}: already exists ({what}); use --force to replace it")
        return
    if what != DIRECTORY:
        raise BfexportError(f"{out.label}: is {what}, not a directory")
    resolved, cwd = out.path.resolve(), Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise BfexportError(f"{out.label}: is the current directory or one above it; name a directory below it")
    if _empty(out.path):
        return  # nothing to lose
    if not out.kind.written_in(out.path):
        raise _not_ours(out.label, out.kind)
    if not force:
        raise BfexportError(f"{out.label}: already exists ({out.kind.name} written by bfexport); use --force to "
                            "replace it")


def _parent(path: Path) -> Path:
    """The existing, writable directory `path` is to be written in (check_outputs' own check)."""
    _check_parent(Output(path))
    return path.resolve().parent


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.
    Only a regular file is ever replaced (a rename over /dev/null would replace the device)."""
    path = Path(path)
    what = what_is(path)
    if what not in (None, REGULAR):
        raise BfexportError(f"{path}: is {what}, expected a file path" if what == DIRECTORY else
                            f"{path}: is {what}; bfexport writes only regular files, give another path")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=_parent(path))
    os.close(fd)
    try:
        with _write_errors(path):
            yield Path(tmp)
            os.chmod(tmp, _umask_mode(directory=False))
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, kind: DirKind | None = None) -> Iterator[Path]:
    """Yield a temporary directory beside `path`; swap it into place only if the block succeeds.
    With `kind`, an existing `path` is replaced only when it is empty or bfexport's own `kind`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise BfexportError(f"{path}: exists and is not a directory")
    if kind is not None and path.is_dir() and not (_empty(path) or kind.written_in(path)):
        raise _not_ours(path, kind)
    old = path.with_name(f".{path.name}.old")  # the previous directory while the new one moves in
    if old.is_dir() and not path.exists():
        os.replace(old, path)  # a run killed between the two renames below: put the previous one back
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=_parent(path)))
    try:
        with _write_errors(path):
            yield tmp
            apply_umask(tmp)
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
    path = regular_file(path)
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


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks (exported models can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
