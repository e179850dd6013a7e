"""bfexport deploy: checkpoint or exported model -> Triton model repository, and its offline check."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape

from bfexport.cli.args import EXIT_FAILED_CHECK, console, emit, json_option
from bfexport.errors import BfexportError


@click.command("deploy")
@click.argument("source", required=False, type=click.Path())
@click.option("--repo", type=click.Path(), default=None, metavar="DIR",
              help="Triton model repository directory (created if absent; other models in it are kept).")
@click.option("--name", default=None, help="Model name (default: from SOURCE). NAME_tokenizer and NAME_text are "
                                           "written beside it.")
@click.option("--backend", type=click.Choice(["onnxruntime", "tensorrt"]), default="onnxruntime", show_default=True,
              help="onnxruntime: 1/model.onnx on CPU instances; tensorrt: 1/model.plan built here (needs TensorRT "
                   "and a GPU), GPU instances.")
@click.option("--calibration", type=click.Path(dir_okay=False), default=None,
              help="calibration.json from `bfexport calibrate`: its thresholds and caps become the defaults.")
@click.option("--allow-unmet-target", is_flag=True,
              help="Deploy a --calibration whose target was not met (refused otherwise, as calibrate refuses "
                   "--write-model then); the output notes it.")
@click.option("--ladder", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="ladder.json from `bfexport calibrate --ladder-*`: also write NAME_slo, a budget controller that "
                   "serves text at the ladder rung holding --slo-p99-ms.")
@click.option("--slo-p99-ms", type=float, default=None, metavar="MS",
              help="The p99 latency NAME_slo holds, stepping down the ladder under load and back up after (with "
                   "--ladder).")
@click.option("--max-batch-size", type=click.IntRange(min=0), default=8, show_default=True,
              help="Triton max_batch_size. With 0 (no batching) the ids-in model's budget inputs are optional; "
                   "otherwise required there (optional on NAME_text either way).")
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
              help="Instances of the model and of the tokenizer (instance_group count).")
@click.option("--dynamic-batching/--no-dynamic-batching", default=None,
              help="Triton dynamic batching [default: on when --max-batch-size > 0].")
@click.option("--force", is_flag=True,
              help="Replace model directories of the same names that bfexport deploy wrote (a directory it did not "
                   "write, or one holding SOURCE, is never replaced).")
@click.option("--check", "check_dir", type=click.Path(), default=None, metavar="DIR",
              help="Only check the repository DIR offline (schema, ONNX Runtime run, tokenizer model); no SOURCE.")
@json_option
def command(source: str | None, repo: str | None, name: str | None, backend: str, calibration: str | None,
            allow_unmet_target: bool, max_batch_size: int, instances: int, dynamic_batching: bool | None, force: bool,
            check_dir: str | None, as_json: bool, ladder: str | None, slo_p99_ms: float | None) -> None:
    """Write a Triton Inference Server model repository for SOURCE (a checkpoint directory or an
    exported .onnx), or check one with --check DIR.

    \b
    DIR/NAME/            the classifier (ids in; logits, head_counts out)
    DIR/NAME_tokenizer/  Python-backend tokenizer (text in, ids out)
    DIR/NAME_text/       ensemble: text in, logits out; optional per-request
                         budget_thresholds / head_caps (one row of n_layers per text)
    DIR/README.md        how to start Triton and send budgets

    The new models are checked offline before they appear; a new repository appears whole or
    not at all, and in an existing one each model directory is moved in whole.

    \b
    Examples:
      bfexport deploy ckpt --repo models --name sections --calibration calibration.json
      bfexport deploy --check models
    """
    from converters.triton import DeployOptions, check_repository, deploy

    if check_dir is not None:
        if source is not None or repo is not None:
            raise BfexportError("--check DIR checks an existing repository: give no SOURCE and no --repo")
        with console.status("checking the model repository"):
            report = check_repository(check_dir)
        emit(report.to_dict(), as_json, _print_check)
        if not report.ok:
            raise click.exceptions.Exit(EXIT_FAILED_CHECK)
        return
    if source is None or repo is None:
        raise BfexportError("give SOURCE (checkpoint directory or .onnx) and --repo DIR, or --check DIR")
    options = DeployOptions(name=name, backend=backend, calibration=calibration,
                            allow_unmet_target=allow_unmet_target, max_batch_size=max_batch_size,
                            instances=instances, dynamic_batching=dynamic_batching, force=force, ladder=ladder,
                            slo_p99_ms=slo_p99_ms)
    with console.status(f"writing the Triton repository ({backend})"):
        result = deploy(source, repo, options)
    emit(result.to_dict(), as_json, _print_deploy)


def _print_check(report: dict[str, Any]) -> None:
    for model in report["models"]:
        state = "[red]FAIL[/red]" if model["errors"] else "[green]ok[/green]"
        console.print(f"{state} {escape(model['name'])} ({escape(model['kind'])})")
        for line in model["passed"]:
            console.print(f"    ok    {escape(line)}", highlight=False)
        for line in model["errors"]:
            console.print(f"    [red]error[/red] {escape(line)}", highlight=False)
        for line in model["notes"]:
            console.print(f"    note  {escape(line)}", highlight=False)
    console.print("[green]repository ok[/green]" if report["ok"] else "[red]repository check failed[/red]")


def _print_deploy(result: dict[str, Any]) -> None:
    models = result["models"]
    console.print(f"wrote {', '.join(models.values())} to {result['repo']} ({result['platform']}, max_batch_size "
                  f"{result['max_batch_size']}, budget inputs {result['budget_inputs']} on {models['model']})",
                  highlight=False)
    if result["replaced"]:
        console.print(f"replaced {', '.join(result['replaced'])}", highlight=False)
    if result["default_thresholds"] is not None:
        console.print(f"default budget: thresholds {result['default_thresholds']}, caps {result['default_caps']}"
                      + (" (calibrated)" if result["calibration"] else ""), highlight=False)
    passed = sum(len(m["passed"]) for m in result["check"]["models"])
    console.print(f"offline check passed ({passed} checks)", highlight=False)
    for note in result["notes"]:
        console.print(f"[yellow]note[/yellow]: {escape(note)}", highlight=False)
    console.print(f"start it: tritonserver --model-repository={result['repo']} (see {result['repo']}/README.md)",
                  highlight=False)
