"""Accuracy vs FLOPs for per-input budgets against static head pruning and the dense twin, one dataset per run.

    python benchmarks/pareto.py --data examples/man-sections --name man-sections
    python benchmarks/pareto.py --data examples/debian-use --name debian-use --max-length 32

Trains, with the same step budget (--epochs, same data, seed and sizes): the dense twin, the
BudgetFormer (the default recipe), the BudgetFormer distilled from the dense twin and the one whose
budget head learns from paired probes (`budget_signal="paired"`); then, from the dense twin,
--finetune-epochs more of: dense-then-budgetize BudgetFormers (distilled; paired) and, at matched
steps, static head pruning fine-tuned, and the dense twin itself (all heads). Every model is scored
on the same test texts: the dense model, before and after those epochs; each BudgetFormer at its
default thresholds and calibrated (on validation) to each --targets FLOPs ratio, with thresholds
only and with caps; static pruning of the dense twin
by head importance (Michel et al. 2019) with and without the fine-tune, and its first k heads (with
--static-twins, the same pruning at each calibrated point's per-layer caps, fine-tuned);
each BudgetFormer's k most-used heads; with --tune-calibrated, also each calibrated point
fine-tuned at its own budget for --finetune-epochs (as static pruning is fine-tuned at its heads;
--static-finetune-epochs gives the static models and the dense twin as many epochs as a dense->...
recipe had after the twin).
Exact McNemar p-values on the test texts, against the dense twin (and the twin after the fine-tune
epochs, the dense model at a fine-tuned point's step budget) and, for each adaptive point, against
the best static baseline at no more FLOPs.

With --dense-from CKPT the dense twin is that checkpoint (e.g. a fine-tuned BERT `bfexport import` wrote)
instead of one trained here, and only the dense->... recipes run (they start from it).

Writes benchmarks/results/pareto-NAME.json, .md (the comparison table) and .png. A benchmark, not a test: it exits 0
whatever the goals say. Progress on stderr.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pareto_stats import best_at_cost, markdown, mcnemar_exact, pareto_front

from bfexport import cost, data, pruning, summary
from bfexport.checkpoint import load_checkpoint, load_tokenizer_json
from bfexport.errors import BfexportError
from bfexport.model import BudgetFormerConfig, BudgetFormerForSequenceClassification
from bfexport.train import Predictions, TrainConfig, predict, train
from calibration import FlopsTarget, calibrate
from converters.onnx import AdaptiveExport, export_with_metadata, save_onnx

RESULTS = Path(__file__).resolve().parent / "results"
STATIC, ADAPTIVE, DENSE = "static", "adaptive", "dense"
DENSE_TUNED = "dense + fine-tune"  # the twin trained --finetune-epochs more: dense at a fine-tuned point's step budget
VARIANTS = ["budgetformer", "budgetformer+distill", "dense->budgetformer+distill", "budgetformer+paired",
            "dense->budgetformer+paired"]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Bench:
    """The test set, the rows scored on it and the runs' timings."""

    def __init__(self, test: list[data.Example]) -> None:
        self.test = test
        self.rows: list[dict[str, Any]] = []
        self.correct: dict[str, np.ndarray] = {}
        self.runs: dict[str, float] = {}

    def score(self, name: str, family: str, kind: str, model: BudgetFormerForSequenceClassification, tokenizer: Any,
              **forward: Any) -> dict[str, Any]:
        p: Predictions = predict(model, tokenizer, self.test, **forward)
        cfg = model.config
        row = {"name": name, "family": family, "kind": kind, "accuracy": p.accuracy,
               "flops_ratio": cost.flops_ratio(cfg, p.lengths, p.head_counts, router=kind == ADAPTIVE),
               "mean_heads_per_layer": [round(float(v), 3) for v in p.head_counts.mean(0)],
               **{k: v for k, v in forward.items() if k in ("thresholds", "caps", "fixed_heads")}}
        if kind == ADAPTIVE:
            layers = summary.adaptivity(p.head_counts, cfg.n_heads)
            row["adaptivity_per_layer"] = layers
            row["adaptive_layers"] = sum(a["adaptive"] for a in layers)
        self.rows.append(row)
        self.correct[name] = p.correct
        say(f"  {name}: accuracy {p.accuracy:.4f}, FLOPs ratio {row['flops_ratio']:.3f}, "
            f"heads {row['mean_heads_per_layer']}")
        return row


def fit(name: str, bench: Bench, work: Path, train_rows: list[data.Example], val_rows: list[data.Example],
        tc: TrainConfig, start: tuple[BudgetFormerForSequenceClassification, Any] | None = None
        ) -> tuple[BudgetFormerForSequenceClassification, Any, Path]:
    say(f"training {name}")
    began = time.perf_counter()
    train(train_rows, val_rows, tc, work / name, show_progress=True, start=start)
    bench.runs[name] = round(time.perf_counter() - began, 1)
    model = load_checkpoint(work / name)
    return model, data.tokenizer_from_str(load_tokenizer_json(work / name), name), work / name


def calibrated(bench: Bench, name: str, model: BudgetFormerForSequenceClassification, tokenizer: Any, ckpt: Path,
               validation: Path, targets: list[float], max_rounds: int) -> list[tuple[str, list[float], list[int]]]:
    """The BudgetFormer calibrated on validation to each target, thresholds only and with caps;
    returns each point's row name, thresholds and caps."""
    points = []
    onnx_path = ckpt / "model.onnx"
    save_onnx(export_with_metadata(model, AdaptiveExport(), load_tokenizer_json(ckpt)), onnx_path)
    for target in targets:
        for mode, only in (("thresholds", True), ("caps", False)):
            try:
                began = time.perf_counter()
                result = calibrate(str(onnx_path), str(validation), FlopsTarget(target), thresholds_only=only,
                                   max_rounds=max_rounds)
                bench.runs[f"calibrate {name} {target:g} {mode}"] = round(time.perf_counter() - began, 1)
            except Exception as e:  # an infeasible target in thresholds-only mode is a result, not a crash
                say(f"  {name} @{target:g} {mode}: {e}")
                continue
            bench.score(f"{name} cal {target:g} ({mode})", name, ADAPTIVE, model, tokenizer,
                        thresholds=result.thresholds, caps=result.caps)
            points.append((f"{name} cal {target:g} ({mode})", list(result.thresholds), list(result.caps)))
    return points


def tuned_at(bench: Bench, points: list[tuple[str, list[float], list[int]]], name: str,
             model: BudgetFormerForSequenceClassification, tokenizer: Any, work: Path, train_rows: list[data.Example],
             val_rows: list[data.Example], ft: TrainConfig) -> None:
    """Each calibrated point fine-tuned at its own budget (exploitation only, the model's thresholds and
    caps set to the point's), as static pruning is fine-tuned at its heads; scored at that budget."""
    for label, thresholds, caps in points:
        start = copy.deepcopy(model)
        start.config = replace(start.config, budget_thresholds=thresholds, head_caps=caps)
        tuned, t, _ = fit(f"{label} + fine-tune".replace(" ", "_"), bench, work, train_rows, val_rows,
                          replace(ft, explore_frac=0.0), start=(start, tokenizer))
        bench.score(f"{label} + fine-tune", f"{name} + fine-tune at its calibrated point", ADAPTIVE, tuned, t,
                    thresholds=thresholds, caps=caps)


def finetune_pruned(bench: Bench, k: int | list[int], importance: np.ndarray,
                    dense: BudgetFormerForSequenceClassification, tokenizer: Any, work: Path,
                    train_rows: list[data.Example], val_rows: list[data.Example], static_ft: TrainConfig) -> None:
    """The dense twin pruned by importance to k heads in every layer (or k[i] in layer i), fine-tuned."""
    run, label = (str(k), str(k)) if isinstance(k, int) else ("-".join(map(str, k)), f"({', '.join(map(str, k))})")
    heads = pruning.top_heads(importance, k)
    model, t, _ = fit(f"pruned-k{run}-finetuned", bench, work, train_rows, val_rows,
                      replace(static_ft, static_heads=heads), start=(dense, tokenizer))
    bench.score(f"dense pruned (importance) k={label} + fine-tune", "static: importance + fine-tune", STATIC,
                model, t, fixed_heads=heads)


def new_allocations(points: list[tuple[str, list[float], list[int]]], done: set[tuple[int, ...]],
                    n_heads: int) -> list[list[int]]:
    """The calibrated points' per-layer caps not pruned to yet (and not all heads), now marked done: the
    allocations of their static twins (the same heads per layer, fixed instead of chosen per input)."""
    fresh = [caps for caps in dict.fromkeys(tuple(c) for _, _, c in points) if caps not in done and min(caps) < n_heads]
    done.update(fresh)
    return [list(caps) for caps in fresh]


def static_from(bench: Bench, name: str, family: str, model: BudgetFormerForSequenceClassification, tokenizer: Any,
                ks: list[int], scores: np.ndarray) -> None:
    for k in ks:
        bench.score(f"{name} k={k}", family, STATIC, model, tokenizer, fixed_heads=pruning.top_heads(scores, k))


def comparisons(bench: Bench) -> list[dict[str, Any]]:
    """Each adaptive point against the dense twin and the best static baseline at no more FLOPs."""
    out = []
    dense = next(r for r in bench.rows if r["kind"] == DENSE)
    tuned = next((r for r in bench.rows if r["name"] == DENSE_TUNED), None)
    for r in (r for r in bench.rows if r["kind"] == ADAPTIVE):
        static = best_at_cost(bench.rows, {STATIC}, r["flops_ratio"])
        out.append({"adaptive": r["name"], "flops_ratio": r["flops_ratio"], "accuracy": r["accuracy"],
                    "vs_dense": r["accuracy"] - dense["accuracy"],
                    "p_vs_dense": mcnemar_exact(bench.correct[r["name"]], bench.correct[dense["name"]]),
                    "vs_dense_tuned": None if tuned is None else r["accuracy"] - tuned["accuracy"],
                    "p_vs_dense_tuned": None if tuned is None else mcnemar_exact(bench.correct[r["name"]],
                                                                                 bench.correct[DENSE_TUNED]),
                    "best_static": None if static is None else static["name"],
                    "best_static_flops_ratio": None if static is None else static["flops_ratio"],
                    "best_static_accuracy": None if static is None else static["accuracy"],
                    "vs_static": None if static is None else r["accuracy"] - static["accuracy"],
                    "p_vs_static": None if static is None else mcnemar_exact(bench.correct[r["name"]],
                                                                             bench.correct[static["name"]])})
    return out


def attention_share(config: BudgetFormerConfig, lengths: np.ndarray) -> float:
    """Mean share of the dense model's FLOPs spent in attention (what skipping heads can save at most)."""
    shares = []
    for n in map(int, lengths):
        ffn = 2 * n * config.d_model * config.d_ff
        shares.append(config.n_layers * (cost.layer_macs(config, n, config.n_heads, router=False) - ffn)
                      / cost.model_macs(config, n))
    return float(np.mean(shares))


def goals(rows: list[dict[str, Any]], comps: list[dict[str, Any]]) -> dict[str, Any]:
    dense = next(r for r in rows if r["kind"] == DENSE)
    cheap = [c for c in comps if c["flops_ratio"] <= 0.7]
    near = max(cheap, key=lambda c: c["accuracy"], default=None)
    beats = [c for c in comps if c["vs_static"] is not None and c["vs_static"] > 0]
    return {"dense_accuracy": dense["accuracy"],
            "best_adaptive_at_0.7": near,
            "within_0.5_points_of_dense_at_0.7": near is not None and near["vs_dense"] >= -0.005,
            "adaptive_above_best_static_at_equal_flops": [c["adaptive"] for c in beats],
            "significant_p_0.05": [c["adaptive"] for c in beats if c["p_vs_static"] < 0.05]}


def plot(rows: list[dict[str, Any]], title: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for family in dict.fromkeys(r["family"] for r in rows):
        members = sorted((r for r in rows if r["family"] == family), key=lambda r: r["flops_ratio"])
        marker = {"dense": "*", "adaptive": "o", "static": "s"}[members[0]["kind"]]
        ax.plot([r["flops_ratio"] for r in members], [r["accuracy"] for r in members], marker=marker,
                linestyle="-" if members[0]["kind"] == STATIC else "none", label=family, markersize=7, alpha=0.8)
    ax.set_xlabel("FLOPs ratio (vs dense)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="directory with train/validation/test .jsonl.gz")
    parser.add_argument("--name", required=True, help="results file stem: benchmarks/results/pareto-NAME.json")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs of every model trained from scratch")
    parser.add_argument("--finetune-epochs", type=int, default=2,
                        help="epochs after the dense twin: dense-then-budgetize and the fine-tuned pruned models")
    parser.add_argument("--static-finetune-epochs", type=int, default=None,
                        help="epochs of the pruned models' and the dense twin's fine-tune (default: "
                             "--finetune-epochs); twice it matches a dense->... recipe with --tune-calibrated, "
                             "which trains --finetune-epochs to budgetize and as many at its calibrated point")
    parser.add_argument("--static-twins", action="store_true",
                        help="also importance-prune to each calibrated point's per-layer caps and fine-tune it "
                             "(the point's static twin)")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8])
    parser.add_argument("--finetune-k", type=int, nargs="+", default=[2, 4], help="static k values to fine-tune")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS,
                        help="BudgetFormer recipes to train")
    parser.add_argument("--calibration-rounds", type=int, default=4, help="local-search rounds per calibration")
    parser.add_argument("--cost-lambda", type=float, default=TrainConfig.cost_lambda)
    parser.add_argument("--cost-lambda-ramp", type=float, default=TrainConfig.cost_lambda_ramp,
                        help="share of each BudgetFormer's steps over which its cost weight grows from 0")
    parser.add_argument("--tune-calibrated", action="store_true",
                        help="also fine-tune each calibrated BudgetFormer point at its budget for --finetune-epochs")
    parser.add_argument("--explore-frac", type=float, default=TrainConfig.explore_frac,
                        help="share of each BudgetFormer's steps spent exploring before exploitation")
    parser.add_argument("--paired-lambda", type=float, default=1.0,
                        help="cost_lambda of the paired-signal recipes (a FLOPs share, not E[k]/H)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-heads", type=int, default=8)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--d-ff", type=int, default=256)
    parser.add_argument("--pooling", choices=["mean", "first"], default="mean",
                        help="first: the classifier reads the first token only, so the heads carry the text")
    parser.add_argument("--vocab-size", type=int, default=4000)
    parser.add_argument("--dense-from", type=Path, default=None,
                        help="a dense checkpoint (bfexport's, or one `bfexport import` wrote, e.g. a fine-tuned "
                             "BERT), run with every head as the dense twin instead of training one; its "
                             "architecture replaces the size options and only the dense->... recipes run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.dense_from is not None:
        scratch = [v for v in args.variants if not v.startswith("dense->")]
        if scratch:
            parser.error(f"--dense-from: the recipes trained from scratch ({', '.join(scratch)}) would not share "
                         "its architecture; pass --variants with dense->... recipes only")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(2)
    began = time.perf_counter()
    read = lambda split: data.read_examples(args.data / f"{split}.jsonl.gz", require_labels=True)  # noqa: E731
    train_rows, val_rows, test_rows = read("train"), read("validation"), read("test")
    validation = args.data / "validation.jsonl.gz"
    tc = TrainConfig(epochs=args.epochs, max_length=args.max_length, d_model=args.d_model, n_heads=args.n_heads,
                     n_layers=args.n_layers, d_ff=args.d_ff, pooling=args.pooling, vocab_size=args.vocab_size,
                     seed=args.seed,
                     cost_lambda=args.cost_lambda, explore_frac=args.explore_frac,
                     cost_lambda_ramp=args.cost_lambda_ramp)
    bench = Bench(test_rows)
    with tempfile.TemporaryDirectory(prefix="pareto-") as tmp:
        work = Path(tmp)
        if args.dense_from is None:
            dense, tok, dense_dir = fit("dense", bench, work, train_rows, val_rows, replace(tc, dense=True))
        else:
            try:
                dense, dense_dir = load_checkpoint(args.dense_from), args.dense_from
            except BfexportError as e:
                sys.exit(f"error: --dense-from: {e}")
            dense.config = replace(dense.config, adaptive=False)  # every head (an import's opened routers: the same)
            tok = data.tokenizer_from_str(load_tokenizer_json(dense_dir), str(dense_dir))
        bench.score("dense", "dense", DENSE, dense, tok)
        H, n_layers = dense.config.n_heads, dense.config.n_layers
        ks = list(range(1, H))
        checkpoint = lambda: save(bench, args, tc, dense.config, tok, test_rows, began, complete=False)  # noqa: E731
        importance = pruning.head_importance(dense, tok, val_rows)
        static_from(bench, "dense pruned (importance)", "static: importance, no fine-tune", dense, tok, ks, importance)
        first = np.tile(np.arange(H, 0, -1, dtype=float), (n_layers, 1))  # heads 0..k-1
        static_from(bench, "dense first heads", "static: first heads, no fine-tune", dense, tok, ks, first)
        ft = replace(tc, epochs=args.finetune_epochs)
        static_ft = replace(tc, epochs=args.static_finetune_epochs or args.finetune_epochs)
        model, t, _ = fit("dense-finetuned", bench, work, train_rows, val_rows, replace(static_ft, dense=True),
                          start=(dense, tok))
        bench.score(DENSE_TUNED, DENSE_TUNED, DENSE, model, t)
        allocations = {(k,) * n_layers for k in args.finetune_k}
        tune_pruned = lambda k: finetune_pruned(bench, k, importance, dense, tok, work,  # noqa: E731
                                                train_rows, val_rows, static_ft)
        for k in args.finetune_k:
            tune_pruned(k)
            checkpoint()
        teacher = str(dense_dir)
        paired: dict[str, Any] = {"budget_signal": "paired", "cost_lambda": args.paired_lambda}
        variants = [("budgetformer", tc, None), ("budgetformer+distill", replace(tc, distill_from=teacher), None),
                    ("dense->budgetformer+distill", replace(ft, distill_from=teacher, init=teacher), None),
                    ("budgetformer+paired", replace(tc, **paired), None),
                    ("dense->budgetformer+paired", replace(ft, init=teacher, **paired), None)]
        for name, config, start in (v for v in variants if v[0] in args.variants):
            model, t, ckpt = fit(name, bench, work, train_rows, val_rows, config, start=start)
            bench.score(f"{name} default", name, ADAPTIVE, model, t)
            points = calibrated(bench, name, model, t, ckpt, validation, args.targets, args.calibration_rounds)
            for caps in new_allocations(points, allocations, H) if args.static_twins else []:
                tune_pruned(caps)
            if args.tune_calibrated:
                tuned_at(bench, points, name, model, t, work, train_rows, val_rows, ft)
            usage = summary.head_usage(predict(model, t, val_rows).heads, H)
            static_from(bench, f"{name} most-used heads", f"static: {name} most-used", model, t, ks, usage)
            checkpoint()
        save(bench, args, tc, dense.config, tok, test_rows, began, complete=True)


def save(bench: Bench, args: argparse.Namespace, tc: TrainConfig, config: BudgetFormerConfig, tok: Any,
         test_rows: list[data.Example], began: float, complete: bool) -> None:
    """Writes the results so far (after every model: a run cut short still leaves its figures)."""
    comps = comparisons(bench)
    lengths = data.encode(tok, [x.text for x in test_rows], config.max_length)[1].sum(-1)
    attention = attention_share(config, lengths)
    result = {"complete": complete, "dataset": str(args.data), "test_rows": len(test_rows),
              "mean_test_tokens": float(lengths.mean()),
              "attention_flops_share_dense": attention, "args": {k: str(v) for k, v in vars(args).items()},
              "train_config": asdict(tc), "seconds": round(time.perf_counter() - began, 1),
              "run_seconds": bench.runs,
              "goals": goals(bench.rows, comps), "comparisons": comps, "pareto_front": [r["name"] for r in
                                                                                        pareto_front(bench.rows)],
              "rows": bench.rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"pareto-{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"pareto-{args.name}.md").write_text(markdown(result))
    plot(bench.rows, f"{args.name}: {len(test_rows)} test texts, mean {lengths.mean():.0f} tokens, attention "
                     f"{attention:.0%} of dense FLOPs", args.out / f"pareto-{args.name}.png")
    if complete:
        say(f"wrote {args.out / f'pareto-{args.name}.json'} in {result['seconds']:.0f} s")
        say(json.dumps(result["goals"], indent=1))


if __name__ == "__main__":
    main()
