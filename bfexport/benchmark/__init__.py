"""The benchmark harness: ONNX Runtime CPU latency of a model as it serves (quick), or of every
flavor against the strongest dense baseline (full), side by side in one interleaved loop.

Layering: this package sits above calibration, like bfexport/cli: it may import converters and
calibration, and nothing below it (bfexport's ground floor, converters, calibration) imports it.
`bfexport bench` (bfexport/cli/bench.py) and benchmarks/*.py are thin layers over it. Its timing
loop is bfexport.timing, the one calibration's latency runtimes use.

Modules, one job each: settings (model shapes, default cells, forced budgets), models (the
models a run times: random, checkpoint, exported file, longer copy), baselines (benchmark-only
dense graphs: fused attention, ONNX Runtime's optimizer), decomposition (benchmark-only graphs
that split adaptive's overhead: the router floor, one path without its Ifs), hf_peer (the Hugging Face peer:
BERT of the same shape, dense and prune_heads, exported by torch.onnx), graphs (the graphs of a quick or full
run, exported and checked, with their feeds and sessions), rows (timed rows and cells: ideal,
speedup, efficiency, overheads), result (the run's JSON and the head-skipping criteria),
sweep (run_benchmark: the cells, timed), environment (versions, CPU, load average), report
(Markdown and rich tables), progress (progress bar, busy-machine warning).

    from bfexport.benchmark import SHIPPED, run_benchmark
    result = run_benchmark([SHIPPED], seqs=[128], threads=[1], batch_sizes=[1], repeats=5)
    print(result.cells[0].row("adaptive", 4).efficiency)
"""

from bfexport.benchmark.baselines import attention_op_export, ort_optimize
from bfexport.benchmark.environment import environment
from bfexport.benchmark.hf_peer import hf_available, hf_graphs
from bfexport.benchmark.models import BenchModel, load_target, random_model, timing_copy
from bfexport.benchmark.progress import progress_bar, warn_if_busy
from bfexport.benchmark.report import headers, print_result, row_cells, to_markdown
from bfexport.benchmark.result import BenchmarkResult, TargetCheck, check_targets
from bfexport.benchmark.rows import Cell, Row, compute_rows, efficiency, ideal_batch, ideal_speedup, overhead
from bfexport.benchmark.settings import (
    BERT_BASE,
    FULL,
    FUSION_MODES,
    MAX_BATCH_ACTIVATION,
    SHIPPED,
    WIDE,
    ModelShape,
    Sweep,
    bert_shape,
    budgets,
    per_sample_caps,
    quick_sweep,
)
from bfexport.benchmark.sweep import Progress, run_benchmark
from bfexport.machine import load_average

__all__ = ["BERT_BASE", "FULL", "FUSION_MODES", "MAX_BATCH_ACTIVATION", "SHIPPED", "WIDE", "BenchModel",
           "BenchmarkResult", "Cell", "ModelShape", "Progress", "Row", "Sweep", "TargetCheck", "attention_op_export",
           "bert_shape", "budgets", "check_targets", "compute_rows", "efficiency", "environment", "headers",
           "hf_available", "hf_graphs", "ideal_batch", "ideal_speedup", "load_average", "load_target", "ort_optimize",
           "overhead", "per_sample_caps", "print_result", "progress_bar", "quick_sweep", "random_model", "row_cells",
           "run_benchmark", "timing_copy", "to_markdown", "warn_if_busy"]
