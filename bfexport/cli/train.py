"""bfexport train: the reference BudgetFormer and its exploration -> exploitation recipe."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from bfexport import data
from bfexport.checkpoint import CHECKPOINT_DIR
from bfexport.cli.args import console, emit, json_option, output_options, verbosity
from bfexport.files import Output, check_outputs
from bfexport.train import BUDGET_SIGNALS, TrainConfig, train

DEFAULTS = TrainConfig()
SIZE_OPTIONS = ("vocab_size", "max_length", "d_model", "n_heads", "n_layers", "d_ff", "pooling")  # what --init decides


@click.command("train")
@click.option("--train", "train_path", required=True, type=click.Path(), help="Training data (text,label).")
@click.option("--validation", "val_path", required=True, type=click.Path(),
              help="Validation data; the best epoch is kept.")
@output_options("Checkpoint directory to write (an existing one is replaced only with --force).", dir_okay=True)
@click.option("--dense", is_flag=True, help="Run every head always (the baseline, same architecture).")
@click.option("--init", type=click.Path(exists=True, file_okay=False), default=None,
              help="Start from this checkpoint (one `bfexport import` wrote, or a bfexport one, dense or not): its "
                   "architecture, tokenizer, labels and weights; the size options do not apply. A dense "
                   "checkpoint's routers are reset so training starts from the model running every head.")
@click.option("--encoder-lr-scale", type=click.FloatRange(0, 1), default=DEFAULTS.encoder_lr_scale,
              show_default=True, help="With --init: learning rate of the pretrained weights as a share of --lr "
                                      "(the routers train at --lr; 0 keeps the pretrained weights fixed).")
@click.option("--freeze-encoder-while-exploring", is_flag=True,
              help="With --init: keep the pretrained weights fixed during exploration, then train them at "
                   "--encoder-lr-scale x --lr.")
@click.option("--epochs", type=click.IntRange(min=1), default=DEFAULTS.epochs, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS.batch_size, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.lr, show_default=True)
@click.option("--explore-frac", type=click.FloatRange(0, 1), default=DEFAULTS.explore_frac, show_default=True,
              help="Share of steps spent exploring (sampled budgets, Gumbel-top-k heads).")
@click.option("--cost-lambda", type=click.FloatRange(min=0), default=DEFAULTS.cost_lambda, show_default=True,
              help="Weight of the compute penalty: E[k]/H, or with --budget-signal paired the FLOPs share of the "
                   "probed head.")
@click.option("--cost-lambda-ramp", type=click.FloatRange(0, 1), default=DEFAULTS.cost_lambda_ramp,
              show_default=True, help="Share of steps over which the penalty's weight grows linearly from 0 to "
                                      "--cost-lambda (0: the full weight from the first step).")
@click.option("--budget-signal", type=click.Choice(BUDGET_SIGNALS), default=DEFAULTS.budget_signal,
              show_default=True,
              help="What trains the budget head: the straight-through gradient of the loss plus --cost-lambda x "
                   "E[k]/H, or 'paired': per input, a probe pass with one head more or fewer in one layer, and "
                   "q(k|x) moves toward the budget with the lower loss + --cost-lambda x FLOPs share (about a "
                   "third more time per step).")
@click.option("--budget-entropy", type=click.FloatRange(min=0), default=DEFAULTS.budget_entropy, show_default=True,
              help="Weight B of an entropy bonus on q(k|x): the loss loses B x its mean entropy (nats), which "
                   "keeps q from collapsing onto one k early (on the shipped data q then came out near uniform for "
                   "every input rather than input-dependent: README). Either --budget-signal; not with --dense.")
@click.option("--distill-from", type=click.Path(exists=True, file_okay=False), default=None,
              help="A checkpoint (the dense twin, trained on the same data with the same --vocab-size) whose "
                   "logits are soft targets: adds --distill-weight * KL(teacher || student).")
@click.option("--distill-weight", type=click.FloatRange(min=0), default=DEFAULTS.distill_weight, show_default=True,
              help="Weight of the distillation term, with --distill-from.")
@click.option("--stop-after-epoch", type=click.IntRange(min=1), default=None,
              help="End after this epoch while keeping the learning-rate and exploration schedule of --epochs.")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
@click.option("--vocab-size", type=click.IntRange(min=100), default=DEFAULTS.vocab_size, show_default=True)
@click.option("--max-length", type=click.IntRange(min=8), default=DEFAULTS.max_length, show_default=True)
@click.option("--d-model", type=click.IntRange(min=8), default=DEFAULTS.d_model, show_default=True)
@click.option("--n-heads", type=click.IntRange(min=1), default=DEFAULTS.n_heads, show_default=True)
@click.option("--n-layers", type=click.IntRange(min=1), default=DEFAULTS.n_layers, show_default=True)
@click.option("--d-ff", type=click.IntRange(min=8), default=DEFAULTS.d_ff, show_default=True)
@click.option("--pooling", type=click.Choice(["mean", "first"]), default=DEFAULTS.pooling, show_default=True,
              help="What the classifier reads: the mean over the tokens, or the first token's vector only (as "
                   "BERT's [CLS]), so that everything else reaches it through attention.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use at most this many training rows.")
@json_option
def command(train_path: str, val_path: str, output: str, limit: int | None, force: bool, as_json: bool,
            **options: object) -> None:
    """Train a BudgetFormer classifier and save the best epoch as a checkpoint directory
    (config.json, model.safetensors, tokenizer.json, training_args.json, metrics.json).

    With --init CKPT it budgetizes an existing model instead: the same exploration -> exploitation
    schedule from CKPT's weights, its routers learning at --lr and the rest at --encoder-lr-scale x --lr.
    """
    init = options["init"]
    ctx = click.get_current_context()
    given = [name for name in SIZE_OPTIONS if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE]
    if init is not None and given:
        raise click.UsageError(f"--init takes the architecture from {init}; drop "
                               + ", ".join("--" + name.replace("_", "-") for name in given))
    inputs = {"--train": train_path, "--validation": val_path, **({"--init": str(init)} if init else {})}
    check_outputs([Output(Path(output), "-o", CHECKPOINT_DIR)], inputs, force=force)
    tc = TrainConfig(**options)  # type: ignore[arg-type]
    train_rows = data.read_examples(train_path, require_labels=True, limit=limit)
    val_rows = data.read_examples(val_path, require_labels=True)
    result = train(train_rows, val_rows, tc, Path(output), show_progress=verbosity.level >= 0)
    emit({"checkpoint": output, **result["best"]}, as_json, lambda r: console.print(
        f"saved {output}: epoch {r['epoch']}, validation accuracy {r['accuracy']:.4f}, "
        f"mean heads per layer {r['mean_heads_per_layer']}"))
