"""The requests `deploy --check --server` sends to a live Triton and how their answers are judged:
texts through the ensemble and ids to the model, with the default, a per-request and per-row
budgets, compared with OnnxClassifier on each text alone; concurrent traffic; bad requests."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bfexport import data
from bfexport.runtime import OnnxClassifier
from converters.triton.http_client import InferError, TritonClient

ATOL = 1e-4  # logits: padding to a bucket and batching with other texts change float sums, not results
SAMPLE_TEXTS = [
    "Python bindings for the GTK toolkit", "command-line utility to convert images between formats",
    "documentation for the GNU C library", "fonts with wide Unicode coverage for the desktop",
    "library for parsing and writing JSON documents (development files)",
    "network monitoring daemon with a web interface", "a game of space ships, lasers and asteroids",
    "Perl module to handle dates and times", "kernel headers for building out-of-tree modules",
    "debugging symbols for the PostgreSQL server", "tools to manage RAID arrays on Linux",
    "LaTeX packages for typesetting music", "Ruby gem for HTTP clients with keep-alive",
    "plugin for the text editor that highlights Go source", "scientific plotting library for Python 3",
    "mail transport agent with TLS support", "Gäme about spâce ships, and lasers!", "", "x",
    " ".join(["documentation for the network tools"] * 40),
]


@dataclass
class Budget:
    """A budget as a client sends it: per text rows (thresholds, caps), or none (the default)."""

    thresholds: np.ndarray | None = None
    caps: np.ndarray | None = None


@dataclass
class Tally:
    """Rows compared, mismatches (with the first few described), the largest logit difference."""

    rows: int = 0
    mismatches: int = 0
    errors: int = 0
    max_diff: float = 0.0
    examples: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.rows += other.rows
        self.mismatches += other.mismatches
        self.errors += other.errors
        self.max_diff = max(self.max_diff, other.max_diff)
        self.examples += other.examples[:3 - len(self.examples)]


class Reference:
    """OnnxClassifier on each text alone (exact length, its own budget row): what every served row
    must equal."""

    def __init__(self, classifier: OnnxClassifier, defaults: tuple[list[float], list[int]] | None) -> None:
        self.classifier, self.defaults = classifier, defaults
        self.max_length = classifier.config.max_length

    def ids(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        return data.encode(self.classifier.tokenizer, [text], self.max_length)

    def run(self, text: str, thresholds: np.ndarray | None, caps: np.ndarray | None) -> dict[str, np.ndarray]:
        ids, mask = self.ids(text)
        if self.defaults is not None:
            thresholds = np.asarray(self.defaults[0], np.float32) if thresholds is None else thresholds
            caps = np.asarray(self.defaults[1], np.int64) if caps is None else caps
        return self.classifier.run(ids, mask, thresholds=None if thresholds is None else thresholds.reshape(1, -1),
                                   caps=None if caps is None else caps.reshape(1, -1))


def compare(reference: Reference, texts: list[str], budget: Budget, got: dict[str, Any], what: str) -> Tally:
    tally = Tally()
    shapes = {name: list(np.shape(got[name])) if name in got else [] for name in ("logits", "head_counts")}
    if any(not shape or shape[0] != len(texts) for shape in shapes.values()):
        return Tally(rows=len(texts), mismatches=len(texts),
                     examples=[f"{what}: {len(texts)} texts, got outputs of shapes {shapes}"])
    for i, text in enumerate(texts):
        row = (None if budget.thresholds is None else budget.thresholds[min(i, len(budget.thresholds) - 1)],
               None if budget.caps is None else budget.caps[min(i, len(budget.caps) - 1)])
        expected = reference.run(text, *row)
        diff = float(np.max(np.abs(got["logits"][i] - expected["logits"][0])))
        tally.rows += 1
        tally.max_diff = max(tally.max_diff, diff)
        if not diff <= ATOL or not np.array_equal(got["head_counts"][i], expected["head_counts"][0]):
            tally.mismatches += 1
            if len(tally.examples) < 3:
                tally.examples.append(f"{what}: text {text[:40]!r}: logits differ by {diff:.2e}, head_counts "
                                      f"{got['head_counts'][i].tolist()} vs {expected['head_counts'][0].tolist()}")
    return tally


def random_budget(rng: random.Random, rows: int, layers: int, heads: int, per_row: bool) -> Budget:
    """Thresholds in [0.05, 1] and caps in [1, heads]: one row for all texts, or one per text."""
    count = rows if per_row else 1
    thresholds = np.array([[rng.uniform(0.05, 1.0) for _ in range(layers)] for _ in range(count)], np.float32)
    caps = np.array([[rng.randint(1, heads) for _ in range(layers)] for _ in range(count)], np.int64)
    return Budget(thresholds, caps)


@dataclass
class Target:
    """What the requests go to: the ensemble (text in) and the model (ids in), and their shapes."""

    ensemble: str | None
    model: str
    mbs: int
    layers: int
    heads: int
    budgets: bool  # the model has budget inputs
    required: bool  # ... and they are required on the model (max_batch_size > 0)


def text_inputs(target: Target, texts: list[str], budget: Budget) -> dict[str, np.ndarray]:
    array = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
    inputs = {"text": array.reshape(-1, 1) if target.mbs > 0 else array}
    rows = len(texts) if target.mbs > 0 else None  # with batching, Triton wants one row per text
    for name, value in (("budget_thresholds", budget.thresholds), ("head_caps", budget.caps)):
        if value is not None:
            inputs[name] = np.repeat(value, rows, axis=0) if rows and len(value) == 1 else value
    return inputs


def id_inputs(target: Target, reference: Reference, text: str, budget: Budget) -> dict[str, np.ndarray]:
    ids, mask = reference.ids(text)
    inputs = {"input_ids": ids, "attention_mask": mask}
    thresholds, caps = budget.thresholds, budget.caps
    if target.required and reference.defaults is not None:
        thresholds = np.asarray([reference.defaults[0]], np.float32) if thresholds is None else thresholds
        caps = np.asarray([reference.defaults[1]], np.int64) if caps is None else caps
    for name, value in (("budget_thresholds", thresholds), ("head_caps", caps)):
        if value is not None:
            inputs[name] = value
    return inputs


def send(client: TritonClient, model: str, inputs: dict[str, np.ndarray], reference: Reference, texts: list[str],
         budget: Budget, what: str) -> Tally:
    try:
        got = client.infer(model, inputs, ["logits", "head_counts"])
    except (InferError, OSError) as e:
        return Tally(rows=len(texts), errors=1, examples=[f"{what}: {e}"])
    return compare(reference, texts, budget, got, what)


def sequential(client: TritonClient, target: Target, reference: Reference, texts: list[str],
               rng: random.Random) -> dict[str, Tally]:
    """Every budget kind on every text, through the ensemble (one text and several per request) and
    to the model (ids in)."""
    out: dict[str, Tally] = {}
    kinds = ["default"] + (["per-request", "per-row"] if target.budgets else [])
    group = max(1, min(target.mbs or 4, 4))
    for kind in kinds:
        if target.ensemble:
            tally = out.setdefault(f"text, {kind} budget", Tally())
            for start in range(0, len(texts), group):
                chunk = texts[start:start + group]
                budget = Budget() if kind == "default" else random_budget(
                    rng, len(chunk), target.layers, target.heads, per_row=kind == "per-row")
                tally.add(send(client, target.ensemble, text_inputs(target, chunk, budget), reference, chunk,
                               budget, f"{target.ensemble} {kind}"))
        if kind == "per-row":
            continue  # ids requests carry one text each: per-row and per-request are the same there
        tally = out.setdefault(f"ids, {kind} budget", Tally())
        for text in texts:
            budget = Budget() if kind == "default" else random_budget(rng, 1, target.layers, target.heads, False)
            tally.add(send(client, target.model, id_inputs(target, reference, text, budget), reference, [text],
                           budget, f"{target.model} {kind}"))
    return out


def concurrent(client: TritonClient, target: Target, reference: Reference, texts: list[str], threads: int,
               per_thread: int, seed: int) -> tuple[Tally, float]:
    """`threads` clients sending `per_thread` one-text requests each (random text and budget kind);
    returns the tally and the wall time."""
    stop = threading.Event()

    def worker(index: int) -> Tally:
        rng, tally = random.Random(seed * 1000 + index), Tally()
        for _ in range(per_thread):
            if stop.is_set():
                break
            text = rng.choice(texts)
            kind = rng.choice(["default", "budget"]) if target.budgets else "default"
            budget = Budget() if kind == "default" else random_budget(rng, 1, target.layers, target.heads, False)
            if target.ensemble and rng.random() < 0.75:
                tally.add(send(client, target.ensemble, text_inputs(target, [text], budget), reference, [text],
                               budget, f"concurrent {target.ensemble}"))
            else:
                tally.add(send(client, target.model, id_inputs(target, reference, text, budget), reference, [text],
                               budget, f"concurrent {target.model}"))
        return tally

    pool = ThreadPoolExecutor(threads)
    try:
        start = time.perf_counter()
        results = list(pool.map(worker, range(threads)))
        wall = time.perf_counter() - start
    finally:
        stop.set()  # on Ctrl-C or a failure: no request starts after this
        pool.shutdown(wait=False, cancel_futures=True)
    total = Tally()
    for result in results:
        total.add(result)
    return total, wall


def bad_requests(target: Target) -> list[tuple[str, str, dict[str, np.ndarray]]]:
    """(what, model, inputs) of requests that must get HTTP 400."""
    if not target.ensemble:
        return []
    ok = text_inputs(target, ["a text"], Budget())
    layers = target.layers
    cases: list[tuple[str, str, dict[str, np.ndarray]]] = [
        ("text as INT64 (wrong dtype)", target.ensemble, {"text": np.zeros_like(ok["text"], dtype=np.int64)}),
        ("no text in the request", target.ensemble, {"text": ok["text"][:0]}),
    ]
    if target.budgets:
        for what, value in (("budget_thresholds 0", 0.0), ("budget_thresholds 1.5", 1.5),
                            ("budget_thresholds NaN", float("nan"))):
            cases.append((what, target.ensemble, {**ok, "budget_thresholds": np.full((1, layers), value, np.float32)}))
        cases += [
            ("head_caps 0", target.ensemble, {**ok, "head_caps": np.zeros((1, layers), np.int64)}),
            ("budget_thresholds as FP64 (wrong dtype)", target.ensemble,
             {**ok, "budget_thresholds": np.full((1, layers), 0.5, np.float64)}),
            (f"budget_thresholds with {layers + 1} values per row", target.ensemble,
             {**ok, "budget_thresholds": np.full((1, layers + 1), 0.5, np.float32)}),
            ("2 texts, a wrong number of budget rows", target.ensemble,
             {"text": np.repeat(ok["text"], 2, axis=0), "budget_thresholds": np.full((1, layers), 0.5, np.float32)}
             if target.mbs > 0 else
             {"text": np.repeat(ok["text"], 2, axis=0), "budget_thresholds": np.full((3, layers), 0.5, np.float32)}),
        ]
    ids: dict[str, np.ndarray] = {"input_ids": np.ones((1, 3), np.int32), "attention_mask": np.ones((1, 3), np.int64)}
    if target.required:
        ids.update(budget_thresholds=np.full((1, layers), 0.5, np.float32), head_caps=np.ones((1, layers), np.int64))
    cases.append(("input_ids as INT32 (wrong dtype)", target.model, ids))
    return cases
