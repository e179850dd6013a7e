"""Move staged model directories into a repository one at a time (with rollback), and keep the
repository README listing bfexport's classifiers."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from bfexport.errors import BfexportError
from bfexport.files import atomic_file, read_json
from converters.triton.layout import META_FILE, README, README_MARKER
from converters.triton.readmes import repo_readme


def install(staging: Path, repo: Path, names: list[str]) -> list[str]:
    """Move staging/<name> to repo/<name> one directory at a time (the ensemble, listed last,
    appears after the models it uses), moving aside what check_outputs allowed to be replaced;
    on failure, move back what was moved and restore what was replaced. Returns the names that
    replaced an existing directory."""
    backups = staging / ".replaced"
    backups.mkdir()
    moved: list[str] = []
    replaced: list[str] = []
    try:
        for name in names:
            target = repo / name
            if target.exists() or target.is_symlink():
                os.replace(target, backups / name)
                replaced.append(name)
            os.replace(staging / name, target)
            moved.append(name)
    except BaseException:
        for name in reversed(moved):
            with contextlib.suppress(OSError):
                os.replace(repo / name, staging / name)
        for name in replaced:
            with contextlib.suppress(OSError):
                if not (repo / name).exists():
                    os.replace(backups / name, repo / name)
        raise
    return replaced


def update_readme(repo: Path, entry: dict[str, Any], notes: list[str]) -> None:
    """Rewrite repo/README.md to list every bfexport classifier, unless the README is not bfexport's."""
    readme = repo / README
    if not readme.exists() or readme.read_text(errors="replace").startswith(README_MARKER):
        with atomic_file(readme) as tmp:
            tmp.write_text(repo_readme(_repo_models(repo, [entry])), encoding="utf-8")
    else:
        notes.append(f"{readme} is not bfexport's: left as it is")


def _repo_models(repo: Path, extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bfexport classifiers in `repo` (plus `extra`), for the repository README."""
    found = {m["name"]: m for m in extra}
    if repo.is_dir():
        for meta_path in sorted(repo.glob(f"*/{META_FILE}")):
            with contextlib.suppress(OSError, BfexportError, KeyError, TypeError, AttributeError):
                meta = read_json(meta_path)
                if meta.get("role") == "model" and meta_path.parent.name not in found:
                    found[meta_path.parent.name] = {"name": meta_path.parent.name, "backend": meta["backend"],
                                                    "ensemble": meta["models"].get("ensemble")}
    return [found[k] for k in sorted(found)]
