"""--report DIR: the accuracy-vs-FLOPs frontier and per-layer head usage, as PNG and JSON.

The figures show what the numbers in calibration.json were chosen from: every configuration
evaluated exactly, the single-global-threshold curve (the baseline), the frontier of what was
tried, the chosen point and the all-heads / one-head extremes. Matplotlib runs headless (Agg).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bfexport.calibration_result import CalibrationResult, plain
from bfexport.errors import BfexportError
from bfexport.files import DirKind, atomic_dir, write_json

FRONTIER_PNG, USAGE_PNG, REPORT_JSON = "pareto.png", "head_usage.png", "report.json"
REPORT_DIR = DirKind("a calibration report", REPORT_JSON, "pareto")  # what --report DIR may replace


def pareto(points: list[dict[str, Any]], cost: str = "flops_ratio") -> list[dict[str, Any]]:
    """Points not beaten by a cheaper-or-equal point with a higher-or-equal objective."""
    out, best = [], -np.inf
    for p in sorted(points, key=lambda p: (p[cost], -p["objective"])):
        if p["objective"] > best:
            out.append(p)
            best = p["objective"]
    return out


def report_json(result: CalibrationResult) -> dict[str, Any]:
    r = result.report or {}
    return {"target": result.target, "objective": result.objective, "cost_unit": result.cost_unit,
            "chosen": r.get("chosen"),
            "thresholds": result.thresholds, "caps": result.caps,
            "baselines": {"all_heads": r.get("all_heads"), "one_head": r.get("one_head"),
                          "global_threshold_best": r.get("baseline"), "global_threshold_sweep": r.get("global")},
            "pareto": pareto(r.get("points", [])), "tried": r.get("points", []),
            "k_histogram_per_layer": r.get("k_histogram_per_layer"), "head_usage": r.get("head_usage"),
            "flops_share_per_layer": r.get("flops_share_per_layer"), "latency_table": r.get("latency_table"),
            "latency_ms": result.latency_ms, "model": result.model, "search": result.search, "notes": result.notes}


def render(result: CalibrationResult, directory: Path) -> list[Path]:
    """Write the figures and report.json into an existing directory."""
    if not result.report:
        raise BfexportError("this calibration result carries no report data (it was loaded from JSON)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = result.report
    latency = r.get("latency_table") is not None
    label = "accuracy" if result.objective == "accuracy" else "agreement with all heads"
    fig, axes = plt.subplots(1, 2 if latency else 1, figsize=(13 if latency else 7.5, 5.2), squeeze=False)
    panels = [("flops_ratio", "FLOPs relative to dense")]
    if latency:
        panels.append(("predicted_latency_ms", f"predicted p{result.target['percentile']} latency (ms)"))
    for ax, (cost, xlabel) in zip(axes[0], panels, strict=True):
        pts = [p for p in r["points"] if p.get(cost) is not None]
        ax.scatter([p[cost] for p in pts], [p["objective"] for p in pts], s=12, c="0.7", label="configurations tried")
        front = pareto(pts, cost)
        ax.step([p[cost] for p in front], [p["objective"] for p in front], where="post", c="tab:blue",
                label="frontier of tried")
        glob = sorted(r["global"], key=lambda p: p[cost])
        ax.plot([p[cost] for p in glob], [p["objective"] for p in glob], "o--", c="tab:orange", ms=4,
                label="single global threshold")
        for name, marker, color in (("all_heads", "s", "black"), ("one_head", "v", "tab:red")):
            ax.scatter([r[name][cost]], [r[name]["objective"]], marker=marker, c=color, s=50, zorder=3,
                       label=name.replace("_", " "))
        ax.scatter([r["chosen"][cost]], [r["chosen"]["objective"]], marker="*", c="tab:green", s=220, zorder=4,
                   label="chosen")
        if cost == "flops_ratio" and result.target["kind"] == "flops":
            ax.axvline(result.target["ratio"], ls=":", c="tab:green", label="target")
        elif cost == "predicted_latency_ms":
            ax.axvline(r.get("search_limit", result.target["ms"]), ls=":", c="tab:green",
                       label="search limit (predicted ms)")
        if cost == "predicted_latency_ms" and result.latency_ms:
            key = f"p{result.target['percentile']}"
            ax.scatter([result.latency_ms[key]], [r["chosen"]["objective"]], marker="x", c="tab:purple", s=80,
                       zorder=5, label=f"verified {key}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    t = result.target
    asked = (f"FLOPs ratio <= {t['ratio']:g}" if t["kind"] == "flops" else
             f"p{t['percentile']} <= {t['ms']:.3g} ms" + (f" ({t['fraction_of_all_heads']:g} x all heads)"
                                                          if t.get("fraction_of_all_heads") else ""))
    axes[0][0].set_title(f"{asked}: chosen {result.objective} {r['chosen']['objective']:.4f} "
                         f"at FLOPs {r['chosen']['flops_ratio']:.3f}", fontsize=10)
    if latency and result.latency_ms:
        lat, key = result.latency_ms, f"p{t['percentile']}"
        axes[0][1].set_title(f"verified {key} {lat[key]:.3f} ms vs all heads {lat['all_heads'][key]:.3f} ms "
                             f"({lat['sessions_meeting_target']}/{lat['sessions']} sessions meet)", fontsize=10)
    fig.tight_layout()
    paths = [directory / FRONTIER_PNG]
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.8))
    L = len(result.thresholds)
    x = np.arange(L)
    bars = [("chosen", r["chosen"]["mean_heads"], "tab:green")]
    if r.get("baseline"):
        bars.append(("best global threshold", r["baseline"]["mean_heads"], "tab:orange"))
    bars.append(("all heads", r["all_heads"]["mean_heads"], "0.5"))
    width = 0.8 / len(bars)
    for j, (name, values, color) in enumerate(bars):
        a1.bar(x + (j - (len(bars) - 1) / 2) * width, values, width, label=name, color=color)
    a1.set_xticks(x, [f"layer {layer}\ntau {t:g}, cap {c}"
                      for layer, (t, c) in enumerate(zip(result.thresholds, result.caps, strict=True))], fontsize=8)
    a1.set_ylabel("mean heads run (k)")
    a1.legend(fontsize=8)
    a1.set_title("heads per layer")
    usage = r.get("head_usage")
    if usage is not None:
        im = a2.imshow(np.asarray(usage), aspect="auto", cmap="viridis", vmin=0, vmax=1)
        a2.set_xticks(range(len(usage[0])))
        a2.set_yticks(range(L))
        a2.set_xlabel("head")
        a2.set_ylabel("layer")
        a2.set_title("fraction of samples running each head (chosen)")
        fig.colorbar(im, ax=a2)
    else:
        hist = np.asarray(r["k_histogram_per_layer"], dtype=float)
        hist /= hist.sum(1, keepdims=True)
        im = a2.imshow(hist, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                       extent=(0.5, hist.shape[1] + 0.5, L - 0.5, -0.5))
        a2.set_xticks(range(1, hist.shape[1] + 1))
        a2.set_yticks(range(L))
        a2.set_xlabel("k (heads run)")
        a2.set_ylabel("layer")
        a2.set_title("distribution of k per layer (chosen)")
        fig.colorbar(im, ax=a2)
    fig.tight_layout()
    paths.append(directory / USAGE_PNG)
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)
    write_json(directory / REPORT_JSON, plain(report_json(result)))
    paths.append(directory / REPORT_JSON)
    return paths


def write_report(result: CalibrationResult, directory: str | Path) -> Path:
    """render() into a directory that appears complete or not at all (replacing only an empty
    directory or a previous report)."""
    with atomic_dir(directory, REPORT_DIR) as tmp:
        render(result, tmp)
    return Path(directory)
