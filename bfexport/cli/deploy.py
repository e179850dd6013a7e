"""bfexport deploy: checkpoint or exported model -> Triton model repository, and its offline check."""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape

from bfexport.cli.args import EXIT_FAILED_CHECK, console, data_options, emit, json_option
from bfexport.errors import BfexportError


def _buckets(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """--pad-buckets: "auto" (None: by backend), "pow2", "exact" (()), or comma-separated lengths."""
    from converters.triton.options import POWERS_OF_TWO

    if value is None or value == "auto":
        return None
    if value == "exact":
        return ()
    if value == "pow2":
        return POWERS_OF_TWO
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: give auto, exact or lengths such as 16,32,64,128") from None


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
@click.option("--pad-buckets", "pad_buckets", default="auto", show_default=True, callback=_buckets,
              metavar="auto|exact|pow2|N,N,...",
              help="Lengths the tokenizer pads each request to (the smallest that holds its longest text), so that "
                   "the dynamic batcher can merge requests of different lengths (it merges only equal shapes). "
                   "exact: each request's longest text; pow2: 16, 32, 64, ... up to max_length; auto: exact for "
                   "onnxruntime (CPU; buckets measured slower there), pow2 for tensorrt.")
@click.option("--check", "check_dir", type=click.Path(), default=None, metavar="DIR",
              help="Only check the repository DIR offline (schema, ONNX Runtime run, tokenizer model); no SOURCE. "
                   "With --server, also on a real Triton server.")
@click.option("--server", is_flag=True,
              help="With --check: also serve DIR on a real tritonserver (127.0.0.1, free ports) and compare texts and "
                   "ids, every budget kind and concurrent requests with OnnxClassifier, and bad requests (400).")
@click.option("--serve", "serve_dir", type=click.Path(), default=None, metavar="DIR",
              help="Serve the repository DIR on a real tritonserver on 127.0.0.1 until Ctrl-C (the server of "
                   "--tritonserver / the serve extra; model.onnx through an ONNX Runtime python-backend stand-in "
                   "when it has no onnxruntime backend; DIR itself is not changed).")
@click.option("--http-port", type=click.IntRange(1, 65535), default=None,
              help="For --serve: the HTTP port [default: a free one, printed].")
@click.option("--tritonserver", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="The tritonserver binary for --server / --serve [default: tritonserver on PATH, else the one "
                   "of the serve extra (nvidia-pytriton) of this Python or of --stub-python's].")
@click.option("--stub-python", type=click.Path(dir_okay=False), default=None, envvar="BFEXPORT_STUB_PYTHON",
              metavar="PATH", show_envvar=True,
              help="For --server / --serve: the python of the environment Triton's python-backend stub runs in "
                   "(its bin/ goes first on the server's PATH): numpy < 2, tokenizers, onnxruntime [default: this "
                   "Python].")
@click.option("--threads", "client_threads", type=click.IntRange(1, 256), default=8, show_default=True,
              help="For --server: concurrent client threads.")
@click.option("--requests", type=click.IntRange(1, 10_000), default=200, show_default=True,
              help="For --server: requests per client thread.")
@data_options("--server sends its texts (default: built-in sample texts).", samples=200)
@json_option
def command(source: str | None, repo: str | None, name: str | None, backend: str, calibration: str | None,
            allow_unmet_target: bool, max_batch_size: int, instances: int, dynamic_batching: bool | None, force: bool,
            pad_buckets: tuple[int, ...] | None, check_dir: str | None, server: bool, serve_dir: str | None,
            http_port: int | None, tritonserver: str | None,
            stub_python: str | None, client_threads: int, requests: int, data_path: str | None, samples: int,
            as_json: bool, ladder: str | None, slo_p99_ms: float | None) -> None:
    """Write a Triton Inference Server model repository for SOURCE (a checkpoint directory or an
    exported .onnx), check one with --check DIR (and --server: on a real Triton server), or serve
    one with --serve DIR.

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
      bfexport deploy --check models --server --stub-python stub-env/bin/python
      bfexport deploy --serve models --http-port 8000
    """
    from converters.triton import DeployOptions, deploy

    if serve_dir is not None:
        if source is not None or repo is not None or check_dir is not None:
            raise BfexportError("--serve DIR serves an existing repository: give no SOURCE, --repo or --check")
        from converters.triton.live_check import LiveOptions, serve

        serve(serve_dir, LiveOptions(tritonserver=tritonserver, stub_python=stub_python),
              lambda line: console.print(line, markup=False, highlight=False), http_port)
        return
    if check_dir is not None:
        if source is not None or repo is not None:
            raise BfexportError("--check DIR checks an existing repository: give no SOURCE and no --repo")
        _check(check_dir, server, tritonserver, stub_python, client_threads, requests, data_path, samples, as_json)
        return
    if server or tritonserver or data_path:
        raise BfexportError("--server, --tritonserver and --data go with --check DIR")
    if source is None or repo is None:
        raise BfexportError("give SOURCE (checkpoint directory or .onnx) and --repo DIR, or --check DIR")
    options = DeployOptions(name=name, backend=backend, calibration=calibration,
                            allow_unmet_target=allow_unmet_target, max_batch_size=max_batch_size,
                            instances=instances, dynamic_batching=dynamic_batching, force=force,
                            pad_buckets=pad_buckets, ladder=ladder, slo_p99_ms=slo_p99_ms)
    with console.status(f"writing the Triton repository ({backend})"):
        result = deploy(source, repo, options)
    emit(result.to_dict(), as_json, _print_deploy)


def _check(check_dir: str, server: bool, tritonserver: str | None, stub_python: str | None, threads: int,
           requests: int, data_path: str | None, samples: int, as_json: bool) -> None:
    """--check DIR [--server]: the offline check, then (when it passes) the live one."""
    from bfexport.data import read_examples
    from converters.triton import check_repository
    from converters.triton.live_check import LiveOptions, check_live, find_live_server

    if server:  # the server, its stub environment and the texts, before any other work
        texts = [e.text for e in read_examples(data_path, limit=samples)] if data_path else []
        options = LiveOptions(tritonserver=tritonserver, stub_python=stub_python, threads=threads,
                              requests=requests, texts=texts)
        found = find_live_server(options)
    elif tritonserver or data_path:
        raise BfexportError("--tritonserver and --data go with --server")
    with console.status("checking the model repository"):
        report = check_repository(check_dir)
    result = report.to_dict()
    ok = report.ok
    if server and ok:
        live = check_live(check_dir, options, lambda line: console.print(line, markup=False, highlight=False),
                          found)
        result["server"] = live.to_dict()
        ok = result["ok"] = live.ok
    emit(result, as_json, _print_check)
    if not ok:
        raise click.exceptions.Exit(EXIT_FAILED_CHECK)


def _print_findings(found: dict[str, Any]) -> None:
    for line in found["passed"]:
        console.print(f"    ok    {escape(line)}", highlight=False)
    for line in found["errors"]:
        console.print(f"    [red]error[/red] {escape(line)}", highlight=False)
    for line in found["notes"]:
        console.print(f"    note  {escape(line)}", highlight=False)


def _print_check(report: dict[str, Any]) -> None:
    for model in report["models"]:
        state = "[red]FAIL[/red]" if model["errors"] else "[green]ok[/green]"
        console.print(f"{state} {escape(model['name'])} ({escape(model['kind'])})")
        _print_findings(model)
    live = report.get("server")
    if live is not None:
        console.print(f"{'[green]ok[/green]' if live['ok'] else '[red]FAIL[/red]'} live server "
                      f"({escape(live['server'].get('binary', '?'))})")
        _print_findings(live)
    errors = [f"{m['name']}: {e}" for m in report["models"] for e in m["errors"]] + (live or {}).get("errors", [])
    console.print("[green]repository ok[/green]" if report["ok"] else
                  f"[red]repository check failed[/red]: {escape(errors[0]) if errors else '?'}"
                  + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""), highlight=False)


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
    console.print(f"serve it: see {result['repo']}/README.md; check it on a real server: bfexport deploy --check "
                  f"{result['repo']} --server", highlight=False)
