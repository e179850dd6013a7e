"""deploy(): every check before any work, then prepare, build in a staging directory beside the
repository, check offline, and move in (a new repository whole, an existing one model by model)."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bfexport.errors import BfexportError
from bfexport.files import Output, apply_umask, check_outputs, regular_file
from bfexport.ladder_result import LadderResult
from converters.triton.build import build
from converters.triton.calibration_file import load_calibration, target_text
from converters.triton.check import check_repository
from converters.triton.controller_dir import CONTROLLER_DIR, CONTROLLER_SUFFIX
from converters.triton.install import install, update_readme
from converters.triton.layout import ENSEMBLE_SUFFIX, MODEL_DIRS, PLATFORMS, README, ROLES, TOKENIZER_SUFFIX
from converters.triton.options import DeployOptions, check_name, default_name
from converters.triton.readmes import repo_readme
from converters.triton.schema import schema
from converters.triton.source import prepare


@dataclass
class DeployResult:
    repo: str
    models: dict[str, str]
    backend: str
    platform: str
    max_batch_size: int
    dynamic_batching: bool
    instances: int
    budget_inputs: str
    default_thresholds: list[float] | None
    default_caps: list[int] | None
    calibration: dict[str, Any] | None
    replaced: list[str]
    check: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def deploy(source: str | Path, repo: str | Path, options: DeployOptions | None = None) -> DeployResult:
    """Write a Triton model repository for `source` (a checkpoint directory or an exported .onnx).

    Args:
        source: checkpoint directory (exported here: adaptive flavor for onnxruntime, trt-plugin
            for tensorrt; dense checkpoints as dense) or a file written by `bfexport convert`.
        repo: the model repository directory: created if absent; an existing one keeps its other
            models.
        options: name, backend, calibration, batching and instances (DeployOptions).

    Returns:
        DeployResult: the models written, their budget inputs, the offline check's report.

    Nothing is written when anything fails (bad option, missing calibration, no TensorRT, a
    model directory that exists without force or that bfexport did not write for that role, a
    model directory holding the source, a README.md that is not a regular file, a failed check);
    all but the last are found before any work.

    Example:
        deploy("ckpt", "models", DeployOptions(name="sections", max_batch_size=16))
    """
    schema()  # the install hint, before anything else
    options = options or DeployOptions()
    source, repo = Path(source), Path(repo)
    if not source.exists():
        raise BfexportError(f"{source}: not found (expected a checkpoint directory or an exported .onnx file)")
    if repo.exists() and not repo.is_dir():
        raise BfexportError(f"{repo}: exists and is not a directory (--repo must be a model repository directory)")
    parent = repo.resolve().parent
    if not parent.is_dir():
        raise BfexportError(f"{repo}: parent directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (repo.is_dir() and not os.access(repo, os.W_OK)):
        raise BfexportError(f"{repo}: not writable")
    name = options.name or default_name(source)
    check_name(name)
    if options.backend == "tensorrt":
        from converters.tensorrt import import_tensorrt

        import_tensorrt()  # the clear install error, before any work
    calibration = None
    if options.calibration is not None:
        regular_file(options.calibration, "calibration file not found")
        calibration = load_calibration(options.calibration, options.allow_unmet_target)  # refused before any work
    dirs = dict(zip(ROLES, (name, name + TOKENIZER_SUFFIX, name + ENSEMBLE_SUFFIX), strict=True))
    outputs = [Output(repo / d, kind=MODEL_DIRS[role], make_parents=True) for role, d in dirs.items()]
    ladder = None
    if options.ladder is not None:
        regular_file(options.ladder, "ladder file not found")
        ladder = LadderResult.load(options.ladder)  # refused before any work
        outputs.append(Output(repo / (name + CONTROLLER_SUFFIX), kind=CONTROLLER_DIR, make_parents=True))
    inputs = {"SOURCE": source, "--calibration": options.calibration, "--ladder": options.ladder}
    check_outputs(outputs, inputs, force=options.force)
    if os.path.lexists(repo / README):
        regular_file(repo / README)  # a README.md directory or pipe would fail after the models are in
    if repo.is_dir() and os.stat(repo).st_dev != os.stat(parent).st_dev:
        raise BfexportError(f"{repo}: is a mount point (another filesystem than {parent}), so the new model "
                            "directories cannot be moved in atomically; deploy to a directory beside it and move them")

    prepared = prepare(source, options, calibration)
    if ladder is not None:
        ladder.check_model(prepared.exported)
        if prepared.tokenizer_json is None or prepared.budget_inputs == "none":
            raise BfexportError("--ladder needs a model with a tokenizer and budget inputs (an adaptive export)")
    notes: list[str] = []
    if prepared.calibration is not None and not prepared.calibration["target_met"]:
        notes.append(f"{options.calibration} did not meet its target {target_text(prepared.calibration['target'])}: "
                     "deployed anyway (--allow-unmet-target)")
    staging = Path(tempfile.mkdtemp(prefix=f".{repo.name}.", suffix=".deploy-tmp", dir=parent))
    try:
        models = build(staging, name, prepared, options, notes, ladder)
        written = list(models.values())
        report = check_repository(staging, models=written)
        if not report.ok:
            raise BfexportError("the new models fail the offline check, nothing was written: "
                                + "; ".join(report.errors()[:3]))
        entry = {"name": name, "backend": options.backend, "ensemble": models.get("ensemble")}
        apply_umask(staging)  # mkdtemp's 0700 would hide the repository from a server running as another user
        if not repo.exists():
            (staging / README).write_text(repo_readme([entry]), encoding="utf-8")
            os.replace(staging, repo)
            replaced: list[str] = []
        else:
            check_outputs(outputs, inputs, force=options.force)  # again: something may have appeared meanwhile
            replaced = install(staging, repo, written)
            update_readme(repo, entry, notes)
    except OSError as e:  # disk full, quota: the repository is as it was
        raise BfexportError(f"{repo}: could not write the repository ({e.strerror or e})") from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    check = report.to_dict()
    check["repo"] = str(repo)
    return DeployResult(str(repo), models, options.backend, PLATFORMS[options.backend], options.max_batch_size,
                        options.batching, options.instances, prepared.budget_inputs, prepared.thresholds,
                        prepared.caps, prepared.calibration, replaced, check, notes)
