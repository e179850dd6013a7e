"""The budget controller's model directory (NAME_slo, written by `deploy --ladder FILE --slo-p99-ms MS`):
its config.pbtxt, its two Python files, and its offline check.

NAME_slo/1/model.py is controller_model.py and NAME_slo/1/budget_controller.py is controller.py,
both byte for byte (a check compares them and never runs them from the repository). The ladder's
rungs (thresholds, caps, measured latency) and the p99 target are config parameters, so one
config.pbtxt says everything the controller serves.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from bfexport.files import DirKind
from bfexport.ladder_result import LadderResult
from converters.triton.configs import header
from converters.triton.controller import ControllerSettings
from converters.triton.layout import CONFIG_FILE, LABELS_FILE, META_FILE, OUTPUTS, README, VERSION
from converters.triton.model_dir import ModelCheck, ModelDir
from converters.triton.options import DeployOptions
from converters.triton.schema import ModelConfig, render_config, schema, string_parameters
from converters.triton.source import Prepared

CONTROLLER_SUFFIX = "_slo"
CONTROLLER_DIR = DirKind("a Triton controller directory", META_FILE, "role", "controller")
FILES = {"model.py": "controller_model.py", "budget_controller.py": "controller.py"}


def controller_file(name: str) -> bytes:
    """A file of the controller model as bfexport writes it (model.py or budget_controller.py)."""
    return resources.files("converters.triton").joinpath(FILES[name]).read_bytes()


def ladder_rungs(ladder: LadderResult) -> list[dict[str, Any]]:
    """The rungs the controller serves: the ladder's, without a rung whose budgets repeat the one
    above it (a step that changes nothing)."""
    out: list[dict[str, Any]] = []
    for rung in ladder.rungs:
        if out and (out[-1]["thresholds"], out[-1]["caps"]) == (rung.thresholds, rung.caps):
            continue
        out.append({"target": rung.target, "thresholds": rung.thresholds, "caps": rung.caps,
                    "p50_ms": rung.latency_ms["p50"], "p99_ms": rung.latency_ms["p99"], "accuracy": rung.accuracy})
    return out


def controller_config(name: str, model: str, tokenizer: str, prepared: Prepared, options: DeployOptions,
                      ladder: LadderResult) -> ModelConfig:
    pb = schema()
    cfg = prepared.exported.config
    mbs = options.max_batch_size

    def tensor(kind: str, tensor_name: str, dtype: str, dims: list[int], **fields: Any) -> Any:
        message = pb.ModelInput if kind == "input" else pb.ModelOutput
        return message(name=tensor_name, data_type=pb.DataType.Value(dtype), dims=dims, **fields)

    inputs = [tensor("input", "text", "TYPE_STRING", [1]),
              tensor("input", "budget_thresholds", "TYPE_FP32", [cfg.n_layers], optional=True),
              tensor("input", "head_caps", "TYPE_INT64", [cfg.n_layers], optional=True)]
    outputs = [tensor("output", OUTPUTS[0], "TYPE_FP32", [cfg.n_labels], label_filename=LABELS_FILE),
               tensor("output", OUTPUTS[1], "TYPE_INT64", [cfg.n_layers]),
               tensor("output", "rung", "TYPE_INT32", [1])]
    config = pb.ModelConfig(name=name, backend="python", max_batch_size=mbs, input=inputs, output=outputs)
    config.instance_group.append(pb.ModelInstanceGroup(count=options.instances,
                                                       kind=pb.ModelInstanceGroup.Kind.Value("KIND_CPU")))
    config.dynamic_batching.SetInParent()
    params = {"bfexport_role": "controller", "classifier": model, "tokenizer": tokenizer,
              "ladder": json.dumps(ladder_rungs(ladder)), "slo_p99_ms": json.dumps(options.slo_p99_ms),
              "controller": "{}", "log_every_s": "10"}
    for key, value in params.items():
        config.parameters[key].string_value = value
    return config


def write_controller(staging: Path, name: str, models: dict[str, str], prepared: Prepared, options: DeployOptions,
                     ladder: LadderResult, meta: dict[str, Any]) -> None:
    """Write staging/NAME_slo (models["controller"]) beside the classifier and tokenizer."""
    directory = staging / models["controller"]
    (directory / VERSION).mkdir(parents=True)
    for target in FILES:
        (directory / VERSION / target).write_bytes(controller_file(target))
    config = controller_config(models["controller"], models["model"], models["tokenizer"], prepared, options, ladder)
    (directory / CONFIG_FILE).write_text(render_config(config, header(
        f"{models['controller']}: text in, {name} at the ladder rung that holds p99 <= {options.slo_p99_ms:g} ms "
        "(Python backend, BLS)")), encoding="utf-8")
    labels = "".join(f"{label}\n" for label in prepared.exported.config.labels)
    (directory / LABELS_FILE).write_text(labels, encoding="utf-8")
    (directory / META_FILE).write_text(json.dumps({**meta, "role": "controller", "models": models,
                                                   "slo_p99_ms": options.slo_p99_ms, "ladder": str(options.ladder)},
                                                  indent=2) + "\n", encoding="utf-8")
    rungs = ladder_rungs(ladder)
    table = "\n".join(f"| {i} | {r['target']:g} | {r['thresholds']} | {r['caps']} | {r['p50_ms']:.2f} | "
                      f"{r['p99_ms']:.2f} | {r['accuracy'] if r['accuracy'] is not None else '-'} |"
                      for i, r in enumerate(rungs))
    (directory / README).write_text(f"""# {models['controller']}: hold p99 <= {options.slo_p99_ms:g} ms

Send text as to `{models.get('ensemble', name + '_text')}`; the answer adds `rung` (the ladder rung each text ran
at, 0 = the full model; -1 when the request brought its own `budget_thresholds` / `head_caps`, which are used
unchanged). Each instance steps down the ladder when requests queue up or its recent p99 rises over 0.8 x the
target, and back up when at most one request waits and its latencies are under 0.5 x the target (1 s dwell).
The counters (requests per rung, moves) are in Triton's log ("bfexport budget controller"). The python-backend
stub needs numpy (< 2 for the tritonserver 2.51 of nvidia-pytriton 0.7).

| rung | target | thresholds | caps | p50 ms | p99 ms | accuracy |
| --- | --- | --- | --- | --- | --- | --- |
{table}

Latencies per call as `bfexport calibrate` measured them on {ladder.runtime.get('name', '?')}, batch
{ladder.measurement.get('batch_size', '?')}.
""", encoding="utf-8")


def check_controller(model: ModelDir, check: ModelCheck, found: dict[str, ModelDir]) -> None:
    """The controller's files are bfexport's own, its parameters parse, and the models it calls are there."""
    versions = model.version_dirs()
    if not versions:
        check.errors.append("no version directory (e.g. 1/)")
        return
    for file in FILES:
        path = versions[-1] / file
        if not path.is_file() or path.read_bytes() != controller_file(file):
            check.errors.append(f"{path.relative_to(model.path)} is not the file bfexport writes (a check never runs "
                                "a repository's code): redeploy")
    params = string_parameters(model.config)
    try:
        rungs = json.loads(params["ladder"])
        target = float(json.loads(params["slo_p99_ms"]))
        ControllerSettings.from_dict({"target_p99_ms": target, "n_rungs": len(rungs),
                                      **json.loads(params.get("controller", "{}"))})
        widths = {len(r["thresholds"]) for r in rungs} | {len(r["caps"]) for r in rungs}
    except (KeyError, TypeError, ValueError) as e:
        check.errors.append(f"config parameters: ladder / slo_p99_ms / controller do not parse ({e})")
        return
    for role in ("classifier", "tokenizer"):
        if params.get(role) not in found:
            check.errors.append(f"calls {role} {params.get(role)!r}, which is not in the repository")
    classifier = found.get(params.get("classifier", ""))
    if classifier is not None:
        layers = classifier.meta.get("n_layers")
        if layers is not None and widths != {layers}:
            check.errors.append(f"ladder rungs have {sorted(widths)} values per row, {classifier.name} has {layers} "
                                "layers")
    if not check.errors:
        check.passed.append(f"controller files are bfexport's; {len(rungs)} rungs, p99 target {target:g} ms; calls "
                            f"{params['tokenizer']} and {params['classifier']}")
