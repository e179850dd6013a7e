"""bfexport calibrate: a FLOP or latency target -> per-layer budget thresholds and head caps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bfexport.cli.args import (
    EXIT_FAILED_CHECK,
    console,
    data_options,
    emit,
    json_option,
    model_argument,
    output_options,
    runtime_options,
)
from bfexport.errors import BfexportError
from bfexport.files import Output, check_outputs
from calibration.api import calibrate, load_model
from calibration.ladder import calibrate_ladder
from calibration.outputs import save_outputs
from calibration.report import REPORT_DIR
from calibration.runtimes import get_runtime
from calibration.targets import PERCENTILES, target_from_options


def _print(r: dict[str, Any]) -> None:
    t, d = r["target"], r["data"]
    if t["kind"] == "flops":
        what = f"FLOPs ratio <= {t['ratio']:g}"
    else:
        what = f"p{t['percentile']} latency <= {t['ms']:.4g} ms" + (
            f" ({t['fraction_of_all_heads']:g} x all heads)" if "fraction_of_all_heads" in t else "")
    console.print(f"[bold]calibrated[/bold] {r['model']['path']} for {what} on {d['samples']} samples "
                  f"({r['objective']} objective) in {r['search']['seconds']:.1f} s")
    console.print(f"  thresholds {r['thresholds']}  caps {r['caps']}  mean heads {r['mean_heads_per_layer']}")
    adaptivity = r["adaptivity_per_layer"]
    if adaptivity:
        console.print("  per layer: distinct k " + ", ".join(str(a["distinct_k"]) for a in adaptivity)
                      + "; std k " + ", ".join(f"{a['std_k']:.2f}" for a in adaptivity))
    score = f"accuracy {r['accuracy']:.4f}, " if r["accuracy"] is not None else ""
    console.print(f"  FLOPs ratio {r['achieved_flops_ratio']:.4f}: {score}"
                  f"agreement with all heads {r['agreement']:.4f}")
    b = r["baselines"]
    if b.get("global_threshold"):
        g = b["global_threshold"]
        console.print(f"  best single global threshold tau {g['thresholds'][0]:g}: {r['objective']} "
                      f"{g['objective']:.4f} at FLOPs {g['flops_ratio']:.4f}")
    a = b["all_heads"]
    console.print(f"  all heads: {r['objective']} {a['objective']:.4f} at FLOPs {a['flops_ratio']:.4f}")
    lat = r.get("latency_ms")
    if lat:
        key = f"p{lat['percentile']}"
        console.print(f"  verified latency ms: p50 {lat['p50']:.3f}  p90 {lat['p90']:.3f}  p95 {lat['p95']:.3f}  "
                      f"p99 {lat['p99']:.3f} (all heads {key} {lat['all_heads'][key]:.3f}, "
                      f"speedup {lat['speedup']:.2f}x); "
                      f"{lat['sessions_meeting_target']}/{lat['sessions']} fresh sessions meet {lat['target_ms']:g} ms")
    for note in r["notes"]:
        console.print(f"  [yellow]note:[/yellow] {note}")
    for kind, path in r.get("outputs", {}).items():
        console.print(f"  wrote {kind}: {path}")


def _ladder_values(text: str, option: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BfexportError(f"{option}: expected comma-separated numbers such as 1.0,0.85,0.7, got {text!r}") from None


def _print_ladder(r: dict[str, Any]) -> None:
    unit = "FLOPs ratio" if r["unit"] == "flops_ratio" else "latency fraction"
    console.print(f"[bold]ladder[/bold] of {len(r['rungs'])} rungs ({unit} targets) for {r['model']['path']} on "
                  f"{r['data']['samples']} samples in {r['search']['seconds']:.1f} s "
                  f"(shared setup {r['search']['shared_setup_seconds']:.1f} s)")
    m = r["measurement"]
    console.print(f"  latency per call on {r['runtime']['name']}, batch {m['batch_size']}, every rung interleaved in "
                  f"{m['sessions']} fresh sessions ({m['calls_per_rung']} calls each)")
    for i, rung in enumerate(r["rungs"]):
        score = f"accuracy {rung['accuracy']:.4f}" if rung["accuracy"] is not None else \
            f"agreement {rung['agreement']:.4f}"
        state = "" if rung["target_met"] else "  [red]target not met[/red]"
        console.print(f"  rung {i} target {rung['target']:g}: thresholds {rung['thresholds']} caps {rung['caps']}  "
                      f"{score}  FLOPs {rung['flops_ratio']:.4f}  p50 {rung['latency_ms']['p50']:.3f} ms  "
                      f"p99 {rung['latency_ms']['p99']:.3f} ms{state}", highlight=False)
    for kind, path in r.get("outputs", {}).items():
        console.print(f"  wrote {kind}: {path}")


def _run_ladder(model: str, data_path: str, values: list[float], unit: str, percentile: str | None,
                tolerance: float | None, runtime: str, threads: int | None, batch_size: int, seq_len: int | None,
                samples: int, thresholds_only: bool, output: str, force: bool, as_json: bool) -> None:
    check_outputs([Output(Path(output), "-o")], {"MODEL": model, "--data": data_path}, force=force)
    exported, _ = load_model(model)
    with console.status("calibrating a ladder") as status:
        ladder, _ = calibrate_ladder(exported, data_path, values, unit=unit,
                                     percentile=50 if percentile is None else int(percentile), tolerance=tolerance,
                                     runtime=runtime, threads=threads, batch_size=batch_size, seq_len=seq_len,
                                     samples=samples, thresholds_only=thresholds_only,
                                     log=lambda msg: status.update(f"calibrating a ladder: {msg}"))
    ladder.save(output)
    emit({**ladder.to_json(), "outputs": {"ladder": output}}, as_json, _print_ladder)
    if not all(r.target_met for r in ladder.rungs):
        if not as_json:
            console.print("[red]a rung's target was not met[/red]")
        raise click.exceptions.Exit(EXIT_FAILED_CHECK)


@click.command("calibrate")
@model_argument
@data_options("Labelled: maximize accuracy; unlabelled: agreement with all heads.", required=True, samples=1000)
@click.option("--target-flops", type=float, default=None, help="Mean FLOPs relative to the dense model, e.g. 0.6.")
@click.option("--target-latency-ms", type=float, default=None, help="Latency per call in ms, measured on --runtime.")
@click.option("--target-latency-fraction", type=float, default=None,
              help="Latency as a fraction of the all-heads latency measured in the same run, e.g. 0.8.")
@click.option("--ladder-flops", default=None, metavar="R1,R2,...",
              help="Calibrate a ladder of FLOPs-ratio targets in one run (e.g. 1.0,0.9,0.8,0.7; 1.0 is the full "
                   "model): one file (-o) with each rung's thresholds, caps, accuracy and measured latency.")
@click.option("--ladder-latency-fraction", default=None, metavar="F1,F2,...",
              help="The same with latency targets, as fractions of the all-heads latency (e.g. 1.0,0.7,0.4).")
@click.option("--percentile", type=click.Choice([str(p) for p in PERCENTILES]), default=None,
              help="Latency percentile the target applies to (default 50).")
@click.option("--tolerance", type=float, default=None,
              help="Band below the target the search aims for: FLOPs ratio units (default 0.02) or a fraction of "
                   "the latency target (default 0.05). A point below it wins when it is more accurate, or as "
                   "accurate and cheaper.")
@runtime_options("Accuracy is always evaluated on the ONNX file itself (ONNX Runtime, CPU).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size the latency target applies to.")
@click.option("--seq-len", type=click.IntRange(min=1), default=None,
              help="Truncate inputs to this many tokens and pad latency batches to it (default: the data's lengths).")
@output_options("Where to write the calibration.", default="calibration.json")
@click.option("--thresholds-only", is_flag=True,
              help="Move only the budget thresholds (caps stay at all heads), so every layer keeps choosing its "
                   "budget per input; the report says per layer how adaptive the result still is.")
@click.option("--write-model", type=click.Path(dir_okay=False), default=None,
              help="Also write MODEL with the calibrated thresholds/caps as its defaults.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write pareto.png, head_usage.png and report.json into this directory.")
@json_option
def command(model: str, data_path: str, target_flops: float | None, target_latency_ms: float | None,
            target_latency_fraction: float | None, percentile: str | None, tolerance: float | None, runtime: str,
            threads: int | None, batch_size: int, seq_len: int | None, samples: int, output: str,
            thresholds_only: bool, write_model: str | None, report_dir: str | None, force: bool, as_json: bool,
            ladder_flops: str | None, ladder_latency_fraction: str | None) -> None:
    """Find per-layer budget thresholds (and head caps) for MODEL that meet a FLOP or latency
    target, losing as little accuracy as possible.

    Candidates run through MODEL itself with per-call thresholds. The search starts from the
    best single global threshold that meets the target, so it ties or beats it. Latency
    targets are profiled on the runtime (per-layer cost of k heads), searched, then verified
    end to end against all heads in fresh sessions; exit 1 if the verified latency misses.

    With --ladder-flops or --ladder-latency-fraction, every target of the list is calibrated in
    one run that shares the data, the path cache and the latency profile (each rung is searched
    as a single target would be, then takes the ladder's most accurate point that meets its
    target; a rung that repeats the one above merges into it), and -o gets one ladder file for
    `bfexport deploy --ladder`.
    """
    if ladder_flops is not None or ladder_latency_fraction is not None:
        if ladder_flops is not None and ladder_latency_fraction is not None:
            raise BfexportError("give one of --ladder-flops and --ladder-latency-fraction")
        if any(v is not None for v in (target_flops, target_latency_ms, target_latency_fraction)):
            raise BfexportError("--ladder-* sets the targets: give no --target-* with it")
        if write_model is not None or report_dir is not None:
            raise BfexportError("--write-model and --report apply to a single target; deploy a ladder with "
                                "`bfexport deploy --ladder FILE`")
        unit, text, option = (("flops_ratio", ladder_flops, "--ladder-flops") if ladder_flops is not None
                              else ("latency_fraction", ladder_latency_fraction, "--ladder-latency-fraction"))
        if unit == "flops_ratio" and percentile is not None:
            raise BfexportError("--percentile applies to latency targets only")
        assert text is not None  # chosen above
        get_runtime(runtime)
        _run_ladder(model, data_path, _ladder_values(text, option), unit, percentile, tolerance, runtime, threads,
                    batch_size, seq_len, samples, thresholds_only, output, force, as_json)
        return
    target = target_from_options(flops=target_flops, latency_ms=target_latency_ms,
                                 latency_fraction=target_latency_fraction,
                                 percentile=None if percentile is None else int(percentile), tolerance=tolerance)
    get_runtime(runtime)  # refuse a runtime this machine cannot run before any work
    planned = [Output(Path(output), "-o")]
    if write_model is not None:
        planned.append(Output(Path(write_model), "--write-model"))
    if report_dir is not None:
        planned.append(Output(Path(report_dir), "--report", REPORT_DIR))
    check_outputs(planned, {"MODEL": model, "--data": data_path}, force=force)
    exported, _ = load_model(model)
    with console.status("calibrating") as status:
        result = calibrate(exported, data_path, target, runtime=runtime, threads=threads, batch_size=batch_size,
                           seq_len=seq_len, samples=samples, head_usage=report_dir is not None,
                           thresholds_only=thresholds_only,
                           log=lambda msg: status.update(f"calibrating: {msg}"))
    outputs = save_outputs(result, exported, output, model=write_model if result.target_met else None,
                           report=report_dir)
    emit({**result.to_json(), "outputs": outputs}, as_json, _print)
    if not result.target_met:
        if not as_json:
            console.print("[red]target not met[/red]" + (": --write-model skipped" if write_model else ""))
        raise click.exceptions.Exit(EXIT_FAILED_CHECK)
