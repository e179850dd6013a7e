"""The BudgetFormer training recipe: exploration, then exploitation.

Exploration (the first `explore_frac` of steps): each layer samples its budget k from q(k|x)
mixed with an epsilon of uniform, and picks heads by Gumbel-top-k on relevance / temperature;
epsilon and temperature anneal linearly. Exploitation: the deterministic inference rule
(k from the model's threshold within its cap, top-k relevance). Either way the hard 0/1 head gate carries
straight-through gradients to the relevance head (softmax of relevance) and to the budget
head (P(k > rank of the head)). Loss = cross-entropy + cost_lambda * mean_l E_q[k]/H, plus, with
a teacher (`distill_from`, the dense twin), distill_weight * KL(teacher || student) on the logits:
the soft targets carry what the dense model knows about the examples a cheap budget gets wrong.

`budget_signal = "paired"` trains the budget head from the per-input loss instead: every step
also runs a probe pass (no gradient, the same dropout masks and head choices) in which each
sample runs one more or one fewer head in one random layer; the difference in that sample's
cross-entropy + cost_lambda * FLOPs (the head's FLOPs at the sample's own length, as a share of
the dense model's mean) says which of the two budgets was better for this input, and a two-action
REINFORCE term moves q(k | x) toward it. Neither the straight-through budget gradient nor E_q[k]
is used then; the relevance head keeps its straight-through gradient.

`cost_lambda_ramp` R > 0 (either signal) grows the penalty's weight linearly from 0 to cost_lambda
over the first R of the steps, so the budget head first learns which k serves which input and
only then what it costs (tried against a constant weight: README).

`budget_entropy` B > 0 (either signal) subtracts B * mean_l H(q_l(.|x)) from the loss: the
entropy bonus of policy-gradient methods, which keeps q soft instead of collapsing early onto one
k for every input, so the quantile rule can still give different inputs different budgets (on the
shipped data it did not do so usefully: q collapsed at B = 0.01 and came out near uniform for
every input at 0.05 and 0.2; README).

`static_heads` instead trains one fixed head set in every layer (fine-tuning a pruned model).
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bfexport import data
from bfexport.checkpoint import load_checkpoint, load_tokenizer_json, save_checkpoint
from bfexport.cost import attention_macs, model_macs
from bfexport.errors import BfexportError
from bfexport.files import write_json
from bfexport.model import (
    BudgetFormerConfig,
    BudgetFormerForSequenceClassification,
    BudgetFormerOutput,
    GateFn,
    Router,
    Selection,
    check_labels,
)
from bfexport.warm_start import load_warm_start, parameter_groups


@dataclass
class TrainConfig:
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.05  # linear warm-up, then linear decay to zero
    explore_frac: float = 0.5  # share of steps spent exploring before exploitation
    temperature: tuple[float, float] = (2.0, 0.1)  # Gumbel-top-k temperature, start -> end of exploration
    epsilon: tuple[float, float] = (0.3, 0.0)  # uniform mixing into q when sampling k
    cost_lambda: float = 0.2  # weight of E_q[k]/H, the compute penalty
    cost_lambda_ramp: float = 0.0  # share of steps over which the penalty's weight grows from 0 to cost_lambda
    dense: bool = False  # train with every head always on (the baseline)
    static_heads: list[list[int]] | None = None  # per layer, the heads that always run (a pruned model); no cost term
    distill_from: str | None = None  # a checkpoint with the same tokenizer and labels whose logits are soft targets
    distill_weight: float = 1.0  # weight of KL(teacher || student) on the logits, with distill_from
    budget_signal: str = "straight-through"  # or "paired": the budget head learns from k +- 1 probes (docstring)
    budget_entropy: float = 0.0  # weight of the entropy bonus on q(k|x), subtracted from the loss; 0: none
    stop_after_epoch: int | None = None  # end early, keeping the schedule of `epochs` (time-boxed runs)
    seed: int = 0
    vocab_size: int = 8000
    max_length: int = 256
    d_model: int = 128
    n_heads: int = 8
    n_layers: int = 4
    d_ff: int = 512
    pooling: str = "mean"  # or "first": the classifier reads position 0 only ([CLS]-style), so heads carry the rest
    dropout: float = 0.1
    init: str | None = None  # a checkpoint to start from (architecture, tokenizer and weights); None: from scratch
    encoder_lr_scale: float = 0.1  # with init: learning rate of the pretrained weights / lr (routers get lr)
    freeze_encoder_while_exploring: bool = False  # with init: pretrained weights fixed until exploitation starts


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


BUDGET_SIGNALS = ("straight-through", "paired")


@dataclass
class Probe:
    """The probe pass's change to the main pass: per sample, one layer runs k + delta heads."""

    layer: torch.Tensor  # (B,) int64
    delta: torch.Tensor  # (B,) int64, +1 or -1 (always within [1, H])


class ExploreExploit:
    """The gate function handed to the model's forward during training. Its own random generator
    draws budgets and Gumbel noise, so dropout (the global generator) can be replayed exactly."""

    def __init__(self, config: BudgetFormerConfig, train_config: TrainConfig, total_steps: int) -> None:
        self.config, self.tc = config, train_config
        self.explore_steps = int(train_config.explore_frac * total_steps)
        self.step = 0
        self.generator: torch.Generator | None = None
        self.chosen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # layer -> (order, counts) of the last pass
        self.probe: Probe | None = None  # set: replay `chosen`, changed as the probe says

    def random(self, device: torch.device) -> torch.Generator:
        if self.generator is None:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(self.tc.seed)
        return self.generator

    @contextlib.contextmanager
    def probing(self, probe: Probe) -> Iterator[None]:
        """Within: every forward replays the last pass's heads, changed as `probe` says."""
        self.probe = probe
        try:
            yield
        finally:
            self.probe = None

    def chosen_counts(self) -> torch.Tensor:
        """(B, L): each sample's k in each layer of the last pass."""
        return torch.stack([self.chosen[i][1] for i in range(self.config.n_layers)], 1)

    def plan_probe(self, batch: int, device: torch.device) -> Probe:
        """A random layer per sample and a direction that keeps its k within [1, H]."""
        g, H = self.random(device), self.config.n_heads
        layer = torch.randint(self.config.n_layers, (batch,), generator=g, device=device)
        k = self.chosen_counts().gather(1, layer.unsqueeze(1)).squeeze(1)
        delta = torch.randint(2, (batch,), generator=g, device=device) * 2 - 1
        delta = torch.where(k + delta > H, -1, torch.where(k + delta < 1, 1, delta))
        return Probe(layer, delta)

    def schedule(self) -> tuple[float, float] | None:
        """(temperature, epsilon) while exploring, None once exploiting."""
        if self.step >= self.explore_steps:
            return None
        t = self.step / max(1, self.explore_steps)
        (t0, t1), (e0, e1) = self.tc.temperature, self.tc.epsilon
        return t0 + (t1 - t0) * t, e0 + (e1 - e0) * t

    def __call__(self, layer: int, budget_logits: torch.Tensor,
                 relevance: torch.Tensor) -> tuple[torch.Tensor, Selection]:
        B, H = relevance.shape
        if self.probe is not None:
            return self.replay(layer, relevance)
        q = budget_logits.softmax(-1)  # (B, H): q[:, j] = P(k = j + 1)
        phase = self.schedule()
        if phase is None:
            tau = torch.tensor(self.config.budget_thresholds[layer], device=q.device)
            cap = torch.tensor(self.config.head_caps[layer], device=q.device)
            counts = Router.budget(budget_logits, tau, cap)
            order, temperature = Router.rank(relevance), 1.0
        else:
            temperature, eps = phase
            g = self.random(q.device)
            explore_q = (1 - eps) * q.detach() + eps / H
            counts = torch.multinomial(explore_q, 1, generator=g).squeeze(1) + 1  # (B,)
            uniform = torch.rand(relevance.shape, generator=g, device=q.device).clamp(1e-9, 1 - 1e-9)
            order = Router.rank(relevance.detach() / temperature - torch.log(-torch.log(uniform)))  # Gumbel-top-k
        self.chosen[layer] = (order, counts)
        rank_of_head = order.argsort(-1)  # (B, H): position of each head in the order
        hard = (rank_of_head < counts.unsqueeze(1)).to(q.dtype)  # (B, H) 0/1
        soft_relevance = (relevance / temperature).softmax(-1)
        gates = hard + (soft_relevance - soft_relevance.detach())
        if self.tc.budget_signal == "straight-through":
            survival = q.flip(-1).cumsum(-1).flip(-1)  # (B, H): P(k > r) at r = 0..H-1
            soft_budget = survival.gather(1, rank_of_head)
            gates = gates + (soft_budget - soft_budget.detach())
        active = torch.arange(H, device=q.device).unsqueeze(0) < counts.unsqueeze(1)
        return gates, Selection(order, active, counts)

    def replay(self, layer: int, relevance: torch.Tensor) -> tuple[torch.Tensor, Selection]:
        """The main pass's heads, but k + delta in the probe's layer for the samples it names."""
        assert self.probe is not None
        order, counts = self.chosen[layer]
        counts = counts + torch.where(self.probe.layer == layer, self.probe.delta, 0)
        hard = (order.argsort(-1) < counts.unsqueeze(1)).to(relevance.dtype)  # (B, H) 0/1
        active = torch.arange(relevance.shape[1], device=relevance.device).unsqueeze(0) < counts.unsqueeze(1)
        return hard, Selection(order, active, counts)


def fixed_heads_gate(heads: list[list[int]]) -> GateFn:
    """The gate function that runs the same heads in every sample: heads[layer] (all of them: the dense model)."""
    def gate(layer: int, budget_logits: torch.Tensor, relevance: torch.Tensor) -> tuple[torch.Tensor, Selection]:
        gates = torch.zeros_like(relevance)  # (B, H)
        gates[:, heads[layer]] = 1.0
        return gates, Selection.fixed(heads[layer], relevance.shape[0], relevance.device)
    return gate


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of the class distributions, mean over the batch."""
    return F.kl_div(student.log_softmax(-1), teacher.log_softmax(-1), log_target=True, reduction="batchmean")


def load_teacher(path: str, tokenizer_json: str, labels: list[str]) -> BudgetFormerForSequenceClassification:
    """The distillation teacher; it must read the same token ids and score the same labels."""
    teacher, teacher_tokenizer = load_checkpoint(path), load_tokenizer_json(path)
    if teacher.config.labels != labels:
        raise BfexportError(f"{path}: the teacher's labels {teacher.config.labels} differ from the data's {labels}")
    if teacher_tokenizer != tokenizer_json:
        raise BfexportError(f"{path}: the teacher's tokenizer differs from this run's (train both on the same data "
                            "with the same --vocab-size)")
    return teacher.eval()


def length_batches(examples: list[data.Example], lengths: np.ndarray, batch_size: int, *,
                   seed: int | None = None) -> list[list[data.Example]]:
    """Batches of similar length, so padding does not dominate the cost (attention is
    quadratic in the padded length). With a seed: shuffled, sorted within pools of 50 batches."""
    order = np.arange(len(examples))
    pool = 50 * batch_size
    if seed is not None:
        order = np.random.default_rng(seed).permutation(order)
    chunks = [order[i:i + pool] for i in range(0, len(order), pool)]
    order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in chunks])
    out = [[examples[i] for i in order[j:j + batch_size]] for j in range(0, len(order), batch_size)]
    if seed is not None:
        np.random.default_rng(seed + 1).shuffle(out)
    return out


def token_lengths(tokenizer: Any, examples: list[data.Example]) -> np.ndarray:
    return np.array([len(e.ids) for e in tokenizer.encode_batch([x.text for x in examples], add_special_tokens=False)])


def expected_budget(budget_probs: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers and batch of E_q[k] / H, the differentiable cost."""
    H = budget_probs[0].shape[-1]
    ks = torch.arange(1, H + 1, dtype=budget_probs[0].dtype, device=budget_probs[0].device)
    return torch.stack([(q * ks).sum(-1).mean() for q in budget_probs]).mean() / H


def budget_entropy(budget_probs: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers and batch of H(q(.|x)) in nats (0 log 0 = 0), the entropy bonus."""
    return torch.stack([torch.special.entr(q).sum(-1).mean() for q in budget_probs]).mean()


def paired_budget_loss(budget_probs: list[torch.Tensor], gate: ExploreExploit, probe: Probe,
                       main_loss: torch.Tensor, probe_loss: torch.Tensor) -> torch.Tensor:
    """Two-action REINFORCE: per sample, (probe loss - main loss) x (log q(k_probe) - log q(k_main))
    in the probed layer, so q moves toward whichever budget served this input better. Losses are
    per sample (B,), cost included, and carry no gradient."""
    q = torch.stack(budget_probs, 1)  # (B, L, H)
    rows = torch.arange(q.shape[0], device=q.device)
    k_main = gate.chosen_counts()[rows, probe.layer]
    log_q = q[rows, probe.layer].clamp_min(1e-9).log()  # (B, H)
    advantage = (probe_loss - main_loss).detach()  # < 0: the probe's budget was better for this input
    return (advantage * (log_q[rows, k_main + probe.delta - 1] - log_q[rows, k_main - 1])).mean()


def head_flops_share(config: BudgetFormerConfig, lengths: torch.Tensor, mean_dense_macs: float) -> torch.Tensor:
    """One head's attention MACs at each sample's length, as a share of the dense model's mean MACs."""
    macs = [attention_macs(config, int(n), 1) for n in lengths.tolist()]
    return torch.tensor(macs, dtype=torch.float32, device=lengths.device) / mean_dense_macs


def paired_step(model: BudgetFormerForSequenceClassification, gate: GateFn, ids: torch.Tensor, mask: torch.Tensor,
                y: torch.Tensor, out: BudgetFormerOutput, dropout_state: torch.Tensor, mean_dense_macs: float,
                cost_lambda: float) -> torch.Tensor:
    """The probe pass and its budget loss (see the module docstring). The global (CPU) generator is
    rewound to where the main pass started, so both passes drop the same units; on CUDA, whose
    dropout draws from the device's generator, the masks differ, which adds noise (not run there)."""
    assert isinstance(gate, ExploreExploit)
    probe = gate.plan_probe(ids.shape[0], ids.device)
    after = torch.get_rng_state()
    torch.set_rng_state(dropout_state)
    try:
        with gate.probing(probe), torch.no_grad():
            probe_logits = model(ids, mask, gate_fn=gate).logits
    finally:
        torch.set_rng_state(after)
    head_cost = cost_lambda * head_flops_share(model.config, mask.sum(-1), mean_dense_macs)  # (B,)
    main_loss = F.cross_entropy(out.logits.detach(), y, reduction="none")
    probe_loss = F.cross_entropy(probe_logits, y, reduction="none") + probe.delta * head_cost
    return paired_budget_loss(out.budget_probs, gate, probe, main_loss, probe_loss)


def tensors(tokenizer: Any, examples: list[data.Example], labels: list[str], max_length: int,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids, mask = data.encode(tokenizer, [e.text for e in examples], max_length)
    y = data.label_ids(examples, labels)
    return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device), torch.from_numpy(y).to(device)


@dataclass
class Predictions:
    """Per example, in the order given: what a model predicted and what it ran."""

    correct: np.ndarray  # (N,) bool
    head_counts: np.ndarray  # (N, n_layers) int
    heads: np.ndarray  # (N, n_layers, H) int: each example's heads by rank, -1 past its k
    lengths: np.ndarray  # (N,) tokens the model saw (special tokens included, truncated)

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())


@torch.no_grad()
def predict(model: BudgetFormerForSequenceClassification, tokenizer: Any, examples: list[data.Example],
            batch_size: int = 64, **forward: Any) -> Predictions:
    """Runs labelled examples; `forward` goes to the model (thresholds, caps, fixed_heads)."""
    model.eval()
    device = next(model.parameters()).device
    cfg = model.config
    correct, counts = np.zeros(len(examples), bool), np.zeros((len(examples), cfg.n_layers), np.int64)
    heads, lengths = np.full((len(examples), cfg.n_layers, cfg.n_heads), -1), np.zeros(len(examples), np.int64)
    index = {id(e): i for i, e in enumerate(examples)}
    for batch in length_batches(examples, token_lengths(tokenizer, examples), batch_size):
        rows = [index[id(e)] for e in batch]
        ids, mask, y = tensors(tokenizer, batch, cfg.labels, cfg.max_length, device)
        out = model(ids, mask, **forward)
        correct[rows] = (out.logits.argmax(-1) == y).cpu().numpy()
        counts[rows] = out.head_counts.cpu().numpy()
        heads[rows] = out.selected_heads(cfg.n_heads).numpy()
        lengths[rows] = mask.sum(-1).cpu().numpy()
    return Predictions(correct, counts, heads, lengths)


def evaluate(model: BudgetFormerForSequenceClassification, tokenizer: Any, examples: list[data.Example],
             batch_size: int = 64, **forward: Any) -> dict[str, Any]:
    """Accuracy and mean heads per layer at the model's configured thresholds (or `forward`'s)."""
    p = predict(model, tokenizer, examples, batch_size, **forward)
    heads = p.head_counts.mean(0)
    return {"accuracy": p.accuracy, "mean_heads_per_layer": [round(float(h), 4) for h in heads],
            "mean_heads": float(heads.mean())}


def ramped_cost_lambda(tc: TrainConfig, step: int, total: int) -> float:
    """The penalty's weight at `step` of `total`: growing linearly from 0 to cost_lambda over the first
    cost_lambda_ramp share of the steps, the full weight from the first step when that share is 0."""
    ramp_steps = tc.cost_lambda_ramp * total
    return tc.cost_lambda * min(1.0, step / ramp_steps) if ramp_steps > 0 else tc.cost_lambda


def group_schedules(groups: list[dict[str, Any]], schedule: Callable[[int], float],
                    frozen_until: int = 0) -> list[Callable[[int], float]]:
    """Per parameter group, the learning-rate factor at each step: `schedule` times the group's
    lr_scale, and 0 for the non-router groups before step `frozen_until`."""
    def factor(group: dict[str, Any]) -> Callable[[int], float]:
        scale, router = float(group["lr_scale"]), bool(group["router"])
        return lambda s: scale * (schedule(s) if router or s >= frozen_until else 0.0)
    return [factor(g) for g in groups]


def train(train_examples: list[data.Example], val_examples: list[data.Example], tc: TrainConfig,
          out_dir: str | Path, *, show_progress: bool = True,
          start: tuple[BudgetFormerForSequenceClassification, Any] | None = None) -> dict[str, Any]:
    """Train a BudgetFormer, keep the best epoch (validation accuracy), save it to out_dir.
    show_progress: one line per epoch on stderr, plus a live bar when stderr is a terminal.
    start: (model, tokenizer) to continue from instead of fresh weights (its architecture and labels win)."""
    seed_everything(tc.seed)
    if tc.budget_signal not in BUDGET_SIGNALS:
        raise BfexportError(f"budget_signal must be one of {', '.join(BUDGET_SIGNALS)}, got {tc.budget_signal!r}")
    if not 0 <= tc.cost_lambda_ramp <= 1:
        raise BfexportError(f"cost_lambda_ramp must be in [0, 1], got {tc.cost_lambda_ramp!r}")
    if not tc.budget_entropy >= 0:
        raise BfexportError(f"budget_entropy must be >= 0, got {tc.budget_entropy!r}")
    if tc.budget_entropy > 0 and (tc.dense or tc.static_heads is not None):
        raise BfexportError("budget_entropy trains the budget head, which dense and static-heads training do not use")
    labels = sorted({e.label for e in train_examples if e.label is not None})
    if len(labels) < 2:
        raise BfexportError("training data needs at least two distinct labels")
    check_labels(labels)  # one a checkpoint cannot carry (a line break: deploy's labels file) fails before any work
    recipe: dict[str, Any] = {}
    if tc.init is not None:  # architecture, tokenizer, labels and weights from the checkpoint
        warm = load_warm_start(tc.init, labels)
        model, config, labels = warm.model, warm.model.config, warm.model.config.labels
        tokenizer = data.tokenizer_from_str(warm.tokenizer_json, f"{tc.init}/tokenizer.json", config.vocab_size)
        config.adaptive = not tc.dense
        recipe = {"init_weights_sha256": warm.weights_sha256, "init_routers_opened": warm.routers_opened,
                  **{k: getattr(config, k) for k in ("vocab_size", "max_length", "d_model", "n_heads", "n_layers",
                                                      "d_ff", "dropout")}}  # the checkpoint's, not the defaults
    elif start is not None:
        model, tokenizer = copy.deepcopy(start[0]), start[1]
        config = model.config
        config.adaptive, labels = not tc.dense, config.labels
    else:
        tokenizer = data.train_tokenizer((e.text for e in train_examples), tc.vocab_size)
        config = BudgetFormerConfig(vocab_size=tokenizer.get_vocab_size(), max_length=tc.max_length,
                                    d_model=tc.d_model, n_heads=tc.n_heads, n_layers=tc.n_layers, d_ff=tc.d_ff,
                                    pooling=tc.pooling, labels=labels, dropout=tc.dropout, adaptive=not tc.dense)
        model = BudgetFormerForSequenceClassification(config)
    data.label_ids(train_examples, labels)  # with a start model, labels it does not know fail now
    data.label_ids(val_examples, labels)  # unknown validation labels fail now, not after an epoch
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    teacher = None if tc.distill_from is None else load_teacher(tc.distill_from, tokenizer.to_str(), labels).to(device)
    lengths = token_lengths(tokenizer, train_examples)
    steps_per_epoch = math.ceil(len(train_examples) / tc.batch_size)
    total = steps_per_epoch * tc.epochs
    epochs_run = min(tc.epochs, tc.stop_after_epoch or tc.epochs)
    fixed = [list(range(config.n_heads))] * config.n_layers if tc.dense else tc.static_heads
    # the paired signal's cost unit: the dense model's mean MACs over the training texts (special tokens left out)
    paired = fixed is None and tc.budget_signal == "paired"
    mean_dense_macs = float(np.mean([model_macs(config, int(n)) for n in np.minimum(lengths, config.max_length)])) \
        if paired else 0.0
    gate = fixed_heads_gate(fixed) if fixed is not None else ExploreExploit(config, tc, total)
    groups = parameter_groups(model, tc.weight_decay, encoder_lr_scale=1.0 if tc.init is None else tc.encoder_lr_scale)
    optimizer = torch.optim.AdamW(groups, lr=tc.lr)
    warmup = max(1, int(tc.warmup_frac * total))

    def schedule(s: int) -> float:
        return min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))

    frozen_until = gate.explore_steps if tc.init is not None and tc.freeze_encoder_while_exploring \
        and isinstance(gate, ExploreExploit) else 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, group_schedules(groups, schedule, frozen_until))

    best: dict[str, Any] = {"accuracy": -1.0}
    history = []
    columns = [TextColumn("[bold]epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f} heads {task.fields[heads]:.2f}"),
               TimeRemainingColumn()]
    # stdout is left to the caller (--json); a live bar only on a terminal, elsewhere one line per epoch
    console = Console(stderr=True)
    with Progress(*columns, console=console, disable=not (show_progress and console.is_terminal)) as progress:
        task = progress.add_task("train", total=steps_per_epoch * epochs_run, epoch=1, loss=0.0, acc=0.0,
                                 heads=float(config.n_heads))
        step = 0
        for epoch in range(1, epochs_run + 1):
            model.train()
            for batch in length_batches(train_examples, lengths, tc.batch_size, seed=tc.seed + epoch):
                ids, mask, y = tensors(tokenizer, batch, labels, config.max_length, device)
                dropout_state = torch.get_rng_state() if paired else None  # for the probe pass to replay
                out = model(ids, mask, gate_fn=gate, labels=y)
                assert out.loss is not None
                if fixed is not None:
                    loss = out.loss
                elif dropout_state is not None:  # the paired signal
                    loss = out.loss + paired_step(model, gate, ids, mask, y, out, dropout_state, mean_dense_macs,
                                                  ramped_cost_lambda(tc, step, total))
                else:
                    loss = out.loss + ramped_cost_lambda(tc, step, total) * expected_budget(out.budget_probs)
                if fixed is None and tc.budget_entropy > 0:
                    loss = loss - tc.budget_entropy * budget_entropy(out.budget_probs)
                if teacher is not None:
                    with torch.no_grad():
                        teacher_logits = teacher(ids, mask).logits
                    loss = loss + tc.distill_weight * distillation_loss(out.logits, teacher_logits)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                step += 1
                if isinstance(gate, ExploreExploit):
                    gate.step += 1
                acc = float((out.logits.argmax(-1) == y).float().mean())
                progress.update(task, advance=1, epoch=epoch, loss=float(loss.detach()), acc=acc,
                                heads=float(out.head_counts.float().mean()))
            metrics = evaluate(model, tokenizer, val_examples, fixed_heads=tc.static_heads)
            history.append({"epoch": epoch, **metrics})
            if show_progress:
                console.print(f"epoch {epoch}/{epochs_run}: validation accuracy {metrics['accuracy']:.4f}, "
                              f"mean heads {metrics['mean_heads']:.2f}", highlight=False)
            exploring = isinstance(gate, ExploreExploit) and gate.schedule() is not None
            if metrics["accuracy"] > best["accuracy"] and not exploring:
                best = {"epoch": epoch, **metrics}
                save_checkpoint(model.cpu(), out_dir, tokenizer_json=tokenizer.to_str(),
                                extra_json={"training_args.json": {**asdict(tc), **recipe},
                                            "metrics.json": {"best": best, "history": history}})
                model.to(device)
    if best["accuracy"] < 0:
        raise BfexportError("no epoch finished exploitation; raise --epochs or lower --explore-frac")
    write_json(Path(out_dir) / "metrics.json", {"best": best, "history": history})
    return {"best": best, "history": history}
