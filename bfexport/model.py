"""BudgetFormer: a Transformer encoder whose attention layers pick, per input, how many heads
to run (the budget k) and which ones (the relevance ranking). Read top to bottom.

Per layer l, from the masked mean s of the layer's (normalised) input:
  budget head     q_l(k | x) = softmax(W_b s)          over k = 1..H
  relevance head  r_l(x)     = W_r s                   one logit per head
  inference       k = smallest k with CDF_q(k) >= tau_l, capped by cap_l, at least 1;
                  the k heads with the highest relevance run (ties to the lower index).
Unselected heads are never computed: their Q/K/V/O weight slices are gathered per sample
(padded to the batch's largest k, padded slots zeroed), exactly as the exported graph does.
Selected heads are summed unweighted through the output projection, so a model that runs
all heads is an ordinary multi-head attention.

Architecture options (config fields; the defaults are bfexport's own model, the others cover
the BERT family, whose weights map one to one):
  norm        "pre": LayerNorm before attention and FFN, a final LayerNorm;
              "post" (BERT): x = LN(x + attn(x)), x = LN(x + ffn(x)), a LayerNorm on the embeddings.
  activation  the FFN's: exact GELU, its tanh approximation, or ReLU; layer_norm_eps for every LayerNorm.
  embeddings  token + token-type row 0 (type_vocab_size > 0; inputs are one segment) + position,
              positions starting at position_offset (RoBERTa's padding_idx + 1).
  head        pooling "mean" (non-padding tokens) or "first" ([CLS] / <s>), then an optional
              pooler (dense d->d + tanh / relu / gelu), then the classifier.

Training (see bfexport/train.py) runs every head and multiplies by a hard 0/1 gate with
straight-through gradients to both heads of the router.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from typing import Any, Callable, TypeVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bfexport.errors import BfexportError
from bfexport.files import is_utf8

MASK_BIAS = -30000.0  # added to scores at padding keys; finite so fp16 exports stay finite too

# What a config may hold. Checked whenever a config is built (config.json, ONNX metadata, the
# Python API), so a wrong type or range fails on one line naming the field, before any module
# is built.
SIZES = {"vocab_size": 1_000_000, "max_length": 16384, "d_model": 8192, "n_heads": 64, "n_layers": 64,
         "d_ff": 65536}  # integer fields in [1, bound]
MAX_LABELS = 100_000
MAX_PARAMETERS = 1_000_000_000  # 4 GB of float32 weights; sizes within every per-field bound can ask for far more
LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")  # what str.splitlines() splits on
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu, "gelu_tanh": partial(F.gelu, approximate="tanh"), "relu": F.relu, "tanh": torch.tanh}
CHOICES = {"norm": ("pre", "post"), "activation": ("gelu", "gelu_tanh", "relu"), "pooling": ("mean", "first"),
           "pooler": ("none", "tanh", "relu", "gelu")}  # the string fields' values
EXTRA_ROWS = {"type_vocab_size": 1024, "position_offset": 1024}  # integer fields in [0, bound]
ARCHITECTURE = ("norm", "layer_norm_eps", "activation", "type_vocab_size", "position_offset", "pooling",
                "pooler")  # the fields config.json holds only when they differ from their defaults


@dataclass
class BudgetFormerConfig:
    vocab_size: int = 8000  # WordPiece vocabulary trained on the training split; tokenizer ids must stay below it
    max_length: int = 256  # longest input in tokens; long inputs are where head skipping pays
    d_model: int = 128  # residual width d
    n_heads: int = 8  # H; head width d_head = d_model / n_heads
    n_layers: int = 4  # encoder layers L, each with its own router
    d_ff: int = 512  # FFN width f
    labels: list[str] = field(default_factory=lambda: ["negative", "positive"])  # class names in logit order
    dropout: float = 0.1  # training only; in [0, 1)
    adaptive: bool = True  # False: every head always runs (the dense baseline, same weights)
    # The budget fields: None (the default, or null in config.json) becomes the per-layer default in
    # __post_init__, so after construction they are always lists (the ignore: only the default is not one).
    budget_thresholds: list[float] = None  # type: ignore[assignment]  # tau per layer in (0, 1]; None: 0.5 (median)
    head_caps: list[int] = None  # type: ignore[assignment]  # kmax per layer in [1, H]; None: n_heads
    pad_token_id: int = 0  # id of [PAD] in [0, vocab_size); bfexport's tokenizers use 0
    # Architecture (module docstring); config.json holds them only where they differ from these
    # defaults, so files written before they existed read, and export, byte for byte as before.
    norm: str = "pre"  # "pre": LN before attention and FFN + a final LN; "post": BERT's order + an embedding LN
    layer_norm_eps: float = 1e-5  # every LayerNorm's epsilon, in (0, 1) (BERT 1e-12)
    activation: str = "gelu"  # FFN: "gelu" (erf), "gelu_tanh" (HF gelu_new / gelu_pytorch_tanh), "relu"
    type_vocab_size: int = 0  # token-type embedding rows (BERT 2, RoBERTa 1, 0 = none); row 0 is added to every token
    position_offset: int = 0  # first position id (RoBERTa 2); pos_emb has max_length + position_offset rows
    pooling: str = "mean"  # "mean" over non-padding tokens, or "first" (the [CLS] / <s> token)
    pooler: str = "none"  # dense d->d + activation before the classifier: "none", "tanh" (BERT), "relu", "gelu"

    def __post_init__(self) -> None:
        for name, bound in SIZES.items():
            check_int(f"config: {name}", getattr(self, name), 1, bound)
        check_int("config: pad_token_id", self.pad_token_id, 0, self.vocab_size - 1)
        for name, bound in EXTRA_ROWS.items():
            check_int(f"config: {name}", getattr(self, name), 0, bound)
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise BfexportError(f"config: {name} must be one of {', '.join(map(repr, allowed))}, "
                                    f"got {show(getattr(self, name))}")
        eps = self.layer_norm_eps
        if not is_number(eps) or not 0.0 < eps < 1.0:
            raise BfexportError(f"config: layer_norm_eps must be a number in (0, 1), got {show(eps)}")
        self.layer_norm_eps = float(eps)
        if self.d_model % self.n_heads:
            raise BfexportError(f"config: d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        self.labels = check_labels(self.labels)
        if not is_number(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise BfexportError(f"config: dropout must be a number in [0, 1), got {show(self.dropout)}")
        self.dropout = float(self.dropout)
        if not isinstance(self.adaptive, bool):
            raise BfexportError(f"config: adaptive must be true or false, got {show(self.adaptive)}")
        if self.budget_thresholds is None:
            self.budget_thresholds = [0.5] * self.n_layers
        if self.head_caps is None:
            self.head_caps = [self.n_heads] * self.n_layers
        self.budget_thresholds = check_thresholds(self.budget_thresholds, self.n_layers)
        self.head_caps = check_caps(self.head_caps, self.n_layers, self.n_heads)
        if self.n_parameters > MAX_PARAMETERS:
            raise BfexportError(f"config: these sizes make {self.n_parameters:,} parameters, more than the "
                                f"{MAX_PARAMETERS:,} bfexport loads")

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def n_parameters(self) -> int:
        """What the model below holds, from the sizes alone (so it is bounded before any module is built)."""
        d, f, H, n = self.d_model, self.d_ff, self.n_heads, self.n_labels
        embeddings = (self.vocab_size + self.max_length + self.position_offset + self.type_vocab_size) * d
        attention = 3 * d * d + 3 * d + d * d + d  # per-head Q/K/V and output projection, with biases
        router = d * 2 * H + 2 * H
        ffn = d * f + f + f * d + d
        per_layer = 2 * 2 * d + attention + router + ffn  # two LayerNorms
        pooler = d * d + d if self.pooler != "none" else 0
        # one more LayerNorm (final for pre, embeddings for post), pooler, classifier
        return embeddings + self.n_layers * per_layer + 2 * d + pooler + d * n + n

    def to_dict(self) -> dict[str, Any]:
        """The fields, less the architecture ones at their defaults (see the field comments)."""
        out = asdict(self)
        for f in fields(self):
            if f.name in ARCHITECTURE and out[f.name] == f.default:
                del out[f.name]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BudgetFormerConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BfexportError(f"config: unknown key(s) {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def show(value: Any, width: int = 80) -> str:
    """A value as error messages quote it: at most `width` characters, and never failing (Python
    refuses to print integers of more than 4300 digits)."""
    try:
        text = repr(value)
    except ValueError:
        return "an integer too long to print"
    return text if len(text) <= width else text[:width - 3] + "..."


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(what: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BfexportError(f"{what} must be an integer in [{low}, {high}], got {show(value)}")


def check_labels(values: Any) -> list[str]:
    """Class names: distinct non-empty strings without surrounding whitespace (data labels are
    stripped), on one line each (a labels file holds one per line) and valid UTF-8."""
    if not isinstance(values, (list, tuple)) or not 1 <= len(values) <= MAX_LABELS:
        raise BfexportError(f"config: labels must be a list of 1 to {MAX_LABELS:,} names, got {show(values)}")
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v or v != v.strip():
            raise BfexportError(f"config: labels[{i}] must be a non-empty string without surrounding whitespace, "
                                f"got {show(v)}")
        if not LINE_BREAKS.isdisjoint(v):
            raise BfexportError(f"config: labels[{i}] {show(v)} contains a line break")
        if not is_utf8(v):
            raise BfexportError(f"config: labels[{i}] {show(v)} is not valid Unicode (a lone surrogate)")
    if len(set(values)) != len(values):
        raise BfexportError(f"config: labels must be distinct, got {show(values)}")
    return list(values)


def check_thresholds(values: Any, n_layers: int) -> list[float]:
    """Budget thresholds are a probability level: (0, 1], one per layer."""
    if not isinstance(values, (list, tuple)) or len(values) != n_layers:
        raise BfexportError(f"budget thresholds: expected a list of {n_layers} values (one per layer), got {values!r}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v <= 1.0:
            raise BfexportError(f"budget thresholds must lie in (0, 1], got {v!r}")
        out.append(float(v))
    return out


def check_caps(values: Any, n_layers: int, n_heads: int) -> list[int]:
    if not isinstance(values, (list, tuple)) or len(values) != n_layers:
        raise BfexportError(f"head caps: expected a list of {n_layers} integers (one per layer), got {values!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= n_heads:
            raise BfexportError(f"head caps must be integers in [1, {n_heads}], got {v!r}")
    return [int(v) for v in values]


# The checks every caller of the model runs, PyTorch (tensors) and ONNX Runtime (numpy arrays) alike.
Batch = TypeVar("Batch", torch.Tensor, np.ndarray)


def check_batch(input_ids: Batch, attention_mask: Batch, config: BudgetFormerConfig) -> None:
    """Reject inputs the model cannot run: wrong shapes, empty or over-long sequences, all-padding rows."""
    if input_ids.ndim != 2 or tuple(input_ids.shape) != tuple(attention_mask.shape) or 0 in input_ids.shape:
        raise BfexportError(f"input_ids and attention_mask must be non-empty (batch, seq) of one shape; got "
                            f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}")
    if input_ids.shape[1] > config.max_length:
        raise BfexportError(f"sequence length {input_ids.shape[1]} exceeds the model's max_length {config.max_length}")
    if not bool((attention_mask.sum(-1) > 0).all()):
        raise BfexportError("a row of the batch is all padding (attention_mask all zero)")
    if bool(((input_ids < 0) | (input_ids >= config.vocab_size)).any()):
        raise BfexportError(f"input_ids outside the vocabulary [0, {config.vocab_size})")


def threshold_rows(values: Any, batch: int, config: BudgetFormerConfig) -> list[list[float]]:
    """Thresholds for a batch: one row (n_layers,) for every sample or one per sample, each row checked."""
    return [check_thresholds(row, config.n_layers) for row in _budget_rows(values, batch, config, "thresholds")]


def cap_rows(values: Any, batch: int, config: BudgetFormerConfig) -> list[list[int]]:
    """Head caps for a batch: one row (n_layers,) for every sample or one per sample, each row checked."""
    return [check_caps(row, config.n_layers, config.n_heads) for row in _budget_rows(values, batch, config, "caps")]


def _budget_rows(values: Any, batch: int, config: BudgetFormerConfig, what: str) -> list[Any]:
    """values (n_layers,) or (1 or batch, n_layers), from lists, tensors or arrays, as a list of rows."""
    try:
        rows = (values if isinstance(values, torch.Tensor) else np.asarray(values)).tolist()  # Python numbers
    except ValueError:
        raise BfexportError(f"{what}: rows of different lengths, expected {config.n_layers} values each") from None
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        return [rows]  # one row for every sample; check_thresholds / check_caps refuse a non-list
    if len(rows) not in (1, batch):
        raise BfexportError(f"{what}: expected ({config.n_layers},) or ({batch}, {config.n_layers}) values, "
                            f"got {len(rows)} rows")
    return list(rows)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over non-padding tokens, as a (mask / length) row vector times x: cheaper than
    a ReduceMean in the exported graph, and the same op order in both runtimes."""
    weights = mask.to(x.dtype)  # (B, S)
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1.0)
    return (weights.unsqueeze(1) @ x).squeeze(1)  # (B, 1, S) @ (B, S, d) -> (B, d)


@dataclass
class Selection:
    """Which heads run in one layer: per sample, up to kmax head indices by rank."""

    heads: torch.Tensor  # (B, kmax) int64 head indices, highest relevance first
    active: torch.Tensor  # (B, kmax) bool, False for slots past the sample's own k
    counts: torch.Tensor  # (B,) int64, the sample's k

    @staticmethod
    def fixed(heads: list[int], batch: int, device: torch.device) -> Selection:
        """The same heads for every sample: static pruning, or all heads for a non-adaptive model."""
        idx = torch.tensor(heads, dtype=torch.long, device=device).expand(batch, -1)  # (B, k)
        counts = torch.full((batch,), len(heads), dtype=torch.long, device=device)  # (B,)
        return Selection(idx, torch.ones_like(idx, dtype=torch.bool), counts)


class Router(nn.Module):
    """Budget distribution over k = 1..H and relevance logits over the H heads."""

    def __init__(self, config: BudgetFormerConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.proj = nn.Linear(config.d_model, 2 * config.n_heads)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        budget_logits, relevance = self.proj(masked_mean(x, mask)).split(self.n_heads, dim=-1)
        return budget_logits, relevance  # (B, H) each

    @staticmethod
    def budget(budget_logits: torch.Tensor, tau: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
        """k = smallest k with CDF(k) >= tau, within [1, cap]. tau and cap are (B,) or scalars.

        Compared in the tail form P(K > k) <= 1 - tau: tail probabilities keep their
        precision where the CDF rounds to 1, so tau = 1 reliably means all heads in every
        runtime. P(K > H) = 0, so only k = 1..H-1 are compared.
        """
        tail = budget_logits.softmax(-1).flip(-1).cumsum(-1).flip(-1)[..., 1:]  # (B, H-1): P(K > k), k = 1..H-1
        k = (tail > (1 - tau).unsqueeze(-1)).sum(-1) + 1  # (B,) tails above 1 - tau come first
        return torch.minimum(k, cap)

    @staticmethod
    def rank(relevance: torch.Tensor) -> torch.Tensor:
        """Heads by descending relevance, ties to the lower index (as ONNX TopK orders them)."""
        return torch.sort(relevance, dim=-1, descending=True, stable=True).indices  # (B, H)

    def select(self, x: torch.Tensor, mask: torch.Tensor, tau: torch.Tensor, cap: torch.Tensor) -> Selection:
        budget_logits, relevance = self(x, mask)
        counts = self.budget(budget_logits, tau, cap)  # (B,)
        kmax = int(counts.max())
        heads = self.rank(relevance)[:, :kmax]  # (B, kmax)
        active = torch.arange(kmax, device=x.device).unsqueeze(0) < counts.unsqueeze(1)  # (B, kmax)
        return Selection(heads, active, counts)


class BudgetedAttention(nn.Module):
    """Multi-head attention that computes only the selected heads of each sample.

    Weights are stored per head so one Gather picks a head's Q/K/V columns and its rows of
    the output projection: qkv_weight (H, d, 3*dh) holds [Wq_h | Wk_h | Wv_h], out_weight
    (H, dh, d) holds head h's rows of Wo.
    """

    def __init__(self, config: BudgetFormerConfig) -> None:
        super().__init__()
        H, d, dh = config.n_heads, config.d_model, config.d_head
        self.n_heads, self.d_head = H, dh
        self.qkv_weight = nn.Parameter(torch.randn(H, d, 3 * dh) * 0.02)
        self.qkv_bias = nn.Parameter(torch.zeros(H, 3 * dh))
        self.out_weight = nn.Parameter(torch.randn(H, dh, d) * 0.02 / math.sqrt(2 * config.n_layers))
        self.out_bias = nn.Parameter(torch.zeros(d))
        self.router = Router(config)
        self.dropout = nn.Dropout(config.dropout)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.d_head) + key_bias  # (B, h, S, S)
        context: torch.Tensor = self.dropout(scores.softmax(-1)) @ v  # (B, h, S, dh)
        return context

    def forward_selected(self, x: torch.Tensor, key_bias: torch.Tensor, sel: Selection) -> torch.Tensor:
        """Inference: gather the selected heads' weights, compute only those heads."""
        w_qkv = self.qkv_weight[sel.heads]  # (B, kmax, d, 3dh)
        b_qkv = self.qkv_bias[sel.heads].unsqueeze(2)  # (B, kmax, 1, 3dh)
        qkv = x.unsqueeze(1) @ w_qkv + b_qkv  # (B, 1, S, d) @ (B, kmax, d, 3dh) -> (B, kmax, S, 3dh)
        q, k, v = torch.split(qkv, self.d_head, dim=-1)  # (B, kmax, S, dh) each
        ctx = self.attend(q, k, v, key_bias)  # (B, kmax, S, dh)
        B, kmax, S, dh = ctx.shape
        ctx = ctx.transpose(1, 2).reshape(B, S, kmax * dh)  # (B, S, kmax*dh) heads side by side
        w_out = self.out_weight[sel.heads] * sel.active[:, :, None, None].to(x.dtype)  # (B, kmax, dh, d), pads zeroed
        return ctx @ w_out.reshape(B, kmax * dh, -1) + self.out_bias  # (B, S, d)

    def forward_gated(self, x: torch.Tensor, key_bias: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """Training: every head computed, each scaled by its (straight-through) 0/1 gate."""
        qkv = torch.einsum("bsd,hde->bhse", x, self.qkv_weight) + self.qkv_bias.unsqueeze(1)  # (B, H, S, 3dh)
        q, k, v = torch.split(qkv, self.d_head, dim=-1)
        ctx = self.attend(q, k, v, key_bias) * gates[:, :, None, None]  # (B, H, S, dh)
        return torch.einsum("bhse,hed->bsd", ctx, self.out_weight) + self.out_bias  # (B, S, d)


class FeedForward(nn.Module):
    def __init__(self, config: BudgetFormerConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff)
        self.down = nn.Linear(config.d_ff, config.d_model)
        nn.init.normal_(self.down.weight, std=0.02 / math.sqrt(2 * config.n_layers))
        self.dropout = nn.Dropout(config.dropout)
        self.activation = ACTIVATIONS[config.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.dropout(self.down(self.activation(self.up(x))))
        return out


# Training hook: (layer, budget_logits, relevance) -> ((B, H) gates, the selection they encode);
# a Block sees it bound to its layer.
GateFn = Callable[[int, torch.Tensor, torch.Tensor], tuple[torch.Tensor, Selection]]
LayerGate = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, Selection]]


class Block(nn.Module):
    """Encoder layer, pre-LN or post-LN; the router reads the input the attention sees (pre: the
    normalised input; post: the block input, already normalised by the previous layer)."""

    def __init__(self, config: BudgetFormerConfig) -> None:
        super().__init__()
        self.pre_norm = config.norm == "pre"
        self.ln_attn = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.attn = BudgetedAttention(config)
        self.ln_ffn = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, key_bias: torch.Tensor, *, tau: torch.Tensor,
                cap: torch.Tensor, heads: list[int] | None = None,
                gate: LayerGate | None = None) -> tuple[torch.Tensor, Selection, torch.Tensor | None]:
        """One layer: choose the heads, attend with them, then the FFN, each with its residual.

        The heads are the router's (budget tau, cap per sample: (B,) each), or `heads` for every
        sample, or under training the ones `gate` samples (then q(k | x) comes back too, for
        the cost term; None otherwise).
        """
        h = self.ln_attn(x) if self.pre_norm else x  # (B, S, d)
        budget_probs = None
        if gate is not None:
            budget_logits, relevance = self.attn.router(h, mask)  # (B, H) each
            gates, sel = gate(budget_logits, relevance)
            budget_probs = budget_logits.softmax(-1)  # (B, H)
            a = self.attn.forward_gated(h, key_bias, gates)
        else:
            sel = Selection.fixed(heads, x.shape[0], x.device) if heads is not None \
                else self.attn.router.select(h, mask, tau, cap)
            a = self.attn.forward_selected(h, key_bias, sel)  # (B, S, d)
        if self.pre_norm:
            x = x + self.dropout(a)
            x = x + self.ffn(self.ln_ffn(x))
        else:
            x = self.ln_attn(x + self.dropout(a))
            x = self.ln_ffn(x + self.ffn(x))
        return x, sel, budget_probs


@dataclass
class BudgetFormerOutput:
    logits: torch.Tensor  # (B, n_labels)
    head_counts: torch.Tensor  # (B, n_layers) heads each sample ran in each layer
    selections: list[Selection]  # per layer; under training, the sampled selection
    budget_probs: list[torch.Tensor]  # per layer (B, H): q(k | x), for the cost term
    loss: torch.Tensor | None = None

    def selected_heads(self, n_heads: int) -> torch.Tensor:
        """(B, n_layers, H): each sample's heads by rank, -1 past its k (the ONNX output)."""
        B = self.logits.shape[0]
        out = torch.full((B, len(self.selections), n_heads), -1, dtype=torch.long)
        for layer, sel in enumerate(self.selections):
            out[:, layer, : sel.heads.shape[1]] = torch.where(sel.active, sel.heads, -1)
        return out


class BudgetFormerForSequenceClassification(nn.Module):
    def __init__(self, config: BudgetFormerConfig) -> None:
        super().__init__()
        self.config = config
        d, pre = config.d_model, config.norm == "pre"
        self.tok_emb = nn.Embedding(config.vocab_size, d)
        self.pos_emb = nn.Embedding(config.max_length + config.position_offset, d)
        self.type_emb = nn.Embedding(config.type_vocab_size, d) if config.type_vocab_size else None
        self.ln_emb = None if pre else nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_final = nn.LayerNorm(d, eps=config.layer_norm_eps) if pre else None
        self.pooler = nn.Linear(d, d) if config.pooler != "none" else None
        self.pooler_activation = ACTIVATIONS.get(config.pooler)
        self.classifier = nn.Linear(d, config.n_labels)
        for emb in (self.tok_emb, self.pos_emb, self.type_emb):
            if emb is not None:
                nn.init.normal_(emb.weight, std=0.02)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        *,
        thresholds: torch.Tensor | list[float] | None = None,
        caps: torch.Tensor | list[int] | None = None,
        fixed_heads: list[list[int]] | None = None,
        gate_fn: GateFn | None = None,
        labels: torch.Tensor | None = None,
    ) -> BudgetFormerOutput:
        """Classify a padded batch: embeddings, the blocks in order, pooling, pooler, classifier.

        thresholds / caps override the config's per layer: shape (n_layers,) or per sample
        (B, n_layers). fixed_heads runs the same heads for every input (static pruning);
        a non-adaptive config runs every head. gate_fn is the training hook (train.py).
        """
        check_batch(input_ids, attention_mask, self.config)
        B, S = input_ids.shape
        cfg, device = self.config, self.tok_emb.weight.device
        tau = torch.tensor(threshold_rows(cfg.budget_thresholds if thresholds is None else thresholds, B, cfg),
                           dtype=torch.float32, device=device).expand(B, -1)  # (B, L)
        cap = torch.tensor(cap_rows(cfg.head_caps if caps is None else caps, B, cfg),
                           dtype=torch.long, device=device).expand(B, -1)  # (B, L)
        if fixed_heads is None and not cfg.adaptive:
            fixed_heads = [list(range(cfg.n_heads))] * cfg.n_layers
        mask = attention_mask.to(torch.bool)
        key_bias = ((~mask).float() * MASK_BIAS)[:, None, None, :]  # (B, 1, 1, S)
        x = self.tok_emb(input_ids)  # (B, S, d)
        if self.type_emb is not None:
            x = x + self.type_emb.weight[0]  # one segment: type id 0 everywhere
        x = x + self.pos_emb(torch.arange(S, device=input_ids.device) + cfg.position_offset)
        if self.ln_emb is not None:
            x = self.ln_emb(x)
        x = self.emb_dropout(x)

        selections, budget_probs = [], []
        for layer, block in enumerate(self.blocks):
            x, sel, probs = block(x, mask, key_bias, tau=tau[:, layer], cap=cap[:, layer],
                                  heads=None if fixed_heads is None else fixed_heads[layer],
                                  gate=None if gate_fn is None else partial(gate_fn, layer))
            selections.append(sel)
            if probs is not None:
                budget_probs.append(probs)

        if self.ln_final is not None:
            x = self.ln_final(x)
        pooled = masked_mean(x, mask) if cfg.pooling == "mean" else x[:, 0]  # (B, d)
        if self.pooler is not None and self.pooler_activation is not None:
            pooled = self.pooler_activation(self.pooler(pooled))
        logits = self.classifier(pooled)  # (B, n_labels)
        head_counts = torch.stack([s.counts for s in selections], dim=1)  # (B, L)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return BudgetFormerOutput(logits, head_counts, selections, budget_probs, loss)

    @torch.no_grad()
    def predict(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> BudgetFormerOutput:
        was_training = self.training
        self.eval()
        try:
            output: BudgetFormerOutput = self(input_ids, attention_mask, **kwargs)
            return output
        finally:
            self.train(was_training)

