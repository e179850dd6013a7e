"""A run's report as text: table rows, Markdown (benchmarks/results) and rich tables (the terminal)."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bfexport.benchmark.result import BenchmarkResult, TargetCheck
from bfexport.benchmark.rows import Row


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def row_cells(row: Row, reference: str, batch: int) -> list[str]:
    """The text of one table row, in headers(batch) order. The dense reference is marked with '*'."""
    name = row.variant + ("*" if row.variant == reference else "")
    if row.k is None:
        k = ""
    elif row.k_padded is not None:
        k = f"{row.k:g} (max {max(row.k_padded)})"
    else:
        k = f"{row.k:g}"
    spread = (row.q3_ms - row.q1_ms) / row.median_ms * 100
    over = "" if row.overhead_vs_static is None else f"{row.overhead_vs_static * 100:+.1f}%"
    hf = "" if row.vs_hf is None else f"{row.vs_hf * 100:+.1f}%"
    cells = [name, k, f"{row.median_ms:.2f}", f"{spread:.1f}%", f"{row.speedup:.3f}", f"{row.ideal:.3f}",
             f"{row.efficiency:.3f}", over, hf, _fmt(row.ideal_per_sample, ".3f"),
             _fmt(row.efficiency_per_sample, ".3f"),
             _fmt(row.p90_ms, ".2f"), _fmt(row.p99_ms, ".2f"), _fmt(row.items_per_s, ".1f")]
    return [c for c, h in zip(cells, HEADERS, strict=True) if h in headers(batch)]


# ms is the median (p50); batch > 1 tables add the two per-sample columns
HEADERS = ["variant", "k", "ms", "IQR", "speedup", "ideal", "efficiency", "vs static", "vs hf",
           "ideal/sample", "eff./sample", "p90 ms", "p99 ms", "items/s"]
PER_SAMPLE = ("ideal/sample", "eff./sample")


def headers(batch: int) -> list[str]:
    return HEADERS if batch > 1 else [h for h in HEADERS if h not in PER_SAMPLE]


def to_markdown(result: BenchmarkResult, targets: list[TargetCheck] | None = None) -> str:
    env = result.environment
    lines = ["# Head-skipping benchmark", "",
             f"ONNX Runtime {env['onnxruntime']} CPU, {env['cpu']} ({env['cpu_count']} cores), fp32; "
             f"{result.settings['repeats']}+ interleaved rounds per cell, medians; load average "
             f"{env.get('loadavg_start')} at start, {env.get('loadavg_end')} at end; "
             f"fusions: {result.settings['fusions']}.",
             ""]
    for m in result.models:
        lines.append(f"- **{m['name']}**: d {m['d_model']}, {m['n_heads']} heads, {m['n_layers']} layers, "
                     f"FFN {m['d_ff']} ({m['source']}); dense candidates: {', '.join(m['dense_variants'])}")
        for note in m["notes"]:
            lines.append(f"  - {note}")
    lines += [f"- {n}" for n in result.notes]
    if targets:
        lines += ["", "## Targets", "", "| target | threshold | worst | result |", "| --- | --- | --- | --- |"]
        for t in targets:
            worst = _worst(t.threshold, t.measurements, cell=True)
            verdict = "not measured" if t.passed is None else ("pass" if t.passed else "**fail**")
            lines.append(f"| {t.name} | {t.threshold} | {worst} | {verdict} |")
    for cell in result.cells:
        names = headers(cell.batch)
        lines += ["", f"## {cell.label}", "", f"dense reference (*): {cell.dense_reference}; {cell.rounds} rounds", "",
                  "| " + " | ".join(names) + " |", "|" + " --- |" * len(names)]
        for row in cell.rows:
            lines.append("| " + " | ".join(row_cells(row, cell.dense_reference, cell.batch)) + " |")
    return "\n".join(lines) + "\n"


def _worst(threshold: str, measurements: list[dict[str, Any]], *, cell: bool) -> str:
    """The measurement furthest on the wrong side of a target (the lowest of a ">=" one, else the
    highest), as text; with `cell`, the cell it was measured on too."""
    if not measurements:
        return ""
    at_least = threshold.startswith(">=")
    m = (min if at_least else max)(measurements, key=lambda m: m["value"])
    text = f"{m['value']:.3f}" if at_least else f"{m['value'] * 100:+.1f}%"
    return f"{text} ({m['cell']})" if cell else text


# ---- rich tables, from BenchmarkResult.to_dict() ------------------------------------------

def print_result(r: dict[str, Any], out: Console) -> None:
    """The human rendering of BenchmarkResult.to_dict() on stdout: one table per cell, then the targets."""
    env = r["environment"]
    out.print(f"ONNX Runtime {env['onnxruntime']} CPU, {escape(str(env['cpu']))} ({env['cpu_count']} cores); "
              f"load average {env['loadavg_start']} at start, {env['loadavg_end']} at end")
    for m in r["models"]:
        out.print(f"[bold]{escape(m['name'])}[/bold]: d {m['d_model']}, {m['n_heads']} heads, "
                  f"{m['n_layers']} layers, FFN {m['d_ff']} ({escape(m['source'])}); "
                  f"dense candidates: {escape(', '.join(m['dense_variants']))}")
        for note in m["notes"]:
            out.print(f"  note: {note}", markup=False)
    for note in r["notes"]:
        out.print(f"note: {note}", markup=False)
    for cell in r["cells"]:
        table = Table(title=f"{cell['model']}  seq {cell['seq']}  batch {cell['batch']}  threads {cell['threads']}"
                            f"  ({cell['rounds']} rounds; ms = median; * = dense reference)", title_justify="left")
        for i, h in enumerate(headers(cell["batch"])):
            table.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
        for row in cell["rows"]:
            table.add_row(*(escape(c) for c in row_cells(_row(row), cell["dense_reference"], cell["batch"])))
        out.print(table)
    if r["targets"]:
        print_targets(r["targets"], out)


def print_targets(targets: list[dict[str, Any]], out: Console) -> None:
    table = Table(title="head-skipping targets", title_justify="left")
    for h in ("target", "threshold", "cells", "worst", "result"):
        table.add_column(h)
    for t in targets:
        verdict = ("not measured" if t["passed"] is None else "[green]pass[/green]" if t["passed"]
                   else "[red]fail[/red]")
        table.add_row(t["name"], t["threshold"], str(len(t["measurements"])),
                      _worst(t["threshold"], t["measurements"], cell=False), verdict)
    out.print(table)


def _row(row: dict[str, Any]) -> Row:
    """A Row back from its JSON dict (JSON has no NaN: None back to NaN where Row uses it)."""
    fields: dict[str, Any] = {k: float("nan") if v is None and k in ("speedup", "efficiency") else v
                              for k, v in row.items()}
    return Row(**fields)
