"""Fine-tune a small BERT-shaped classifier densely on the shipped Debian data, with transformers.

No pretrained weights can be downloaded here, so the "pretrained encoder" of the import
demonstration is made locally: a WordPiece vocabulary trained on the training split (saved as a
BertTokenizerFast), a BertForSequenceClassification from a config (random init), fine-tuned
with plain PyTorch, then `save_pretrained` to OUT. Needs the `hf` extra (transformers).

    python scripts/demo_finetune_bert.py --out demo-out/hf-bert
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tokenizers import BertWordPieceTokenizer
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bfexport.data import read_examples  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "examples" / "debian-sections"


def batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Index batches of similar token length (shuffled pools of 50 batches when rng is given)."""
    order = np.arange(len(lengths)) if rng is None else rng.permutation(len(lengths))
    pool = 50 * batch_size
    chunks = np.split(order, range(pool, len(order), pool))
    order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in chunks])
    out = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(out)  # type: ignore[arg-type]
    return out


@torch.no_grad()
def accuracy(model: BertForSequenceClassification, tok: BertTokenizerFast, texts: list[str], y: np.ndarray,
             max_length: int) -> float:
    model.eval()
    lengths = np.array([len(t) for t in texts])
    correct = 0
    for idx in batches(lengths, 64, None):
        enc = tok([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        correct += int((model(**enc).logits.argmax(-1).numpy() == y[idx]).sum())
    return correct / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DATA, help="directory with train/validation .jsonl.gz")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    train = read_examples(args.data / "train.jsonl.gz", require_labels=True)
    val = read_examples(args.data / "validation.jsonl.gz", require_labels=True)
    labels = sorted({e.label for e in train if e.label is not None})
    index = {name: i for i, name in enumerate(labels)}

    args.out.mkdir(parents=True, exist_ok=True)
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator([e.text for e in train], vocab_size=args.vocab_size, show_progress=False,
                                  special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    wordpiece.save_model(str(args.out))  # vocab.txt
    tok = BertTokenizerFast(vocab_file=str(args.out / "vocab.txt"), do_lower_case=True,
                            model_max_length=args.max_length)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=args.d_model, num_hidden_layers=args.layers,
                        num_attention_heads=args.heads, intermediate_size=4 * args.d_model,
                        max_position_embeddings=args.max_length, num_labels=len(labels),
                        id2label=dict(enumerate(labels)), label2id=index)
    model = BertForSequenceClassification(config)

    texts = [e.text for e in train]
    y = np.array([index[e.label] for e in train if e.label is not None])
    val_texts, val_y = [e.text for e in val], np.array([index[e.label] for e in val if e.label is not None])
    lengths = np.array([len(ids) for ids in tok(texts, truncation=True, max_length=args.max_length)["input_ids"]])
    steps = math.ceil(len(texts) / args.batch_size) * args.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = max(1, steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    rng = np.random.default_rng(args.seed)
    history, best = [], -1.0
    for epoch in range(1, args.epochs + 1):
        model.train()
        for step, idx in enumerate(batches(lengths, args.batch_size, rng)):
            if step % 100 == 0:
                print(f"epoch {epoch} step {step} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
            enc = tok([texts[i] for i in idx], truncation=True, max_length=args.max_length, padding=True,
                      return_tensors="pt")
            loss = model(**enc, labels=torch.from_numpy(y[idx])).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
        acc = accuracy(model, tok, val_texts, val_y, args.max_length)
        history.append({"epoch": epoch, "validation_accuracy": acc, "seconds": round(time.perf_counter() - start, 1)})
        print(f"epoch {epoch}/{args.epochs}: validation accuracy {acc:.4f} ({time.perf_counter() - start:.0f} s)",
              file=sys.stderr)
        if acc > best:
            best = acc
            model.save_pretrained(args.out)  # model.safetensors + config.json: the best epoch
            tok.save_pretrained(args.out)  # tokenizer.json, vocab.txt, tokenizer_config.json, special tokens
    (args.out / "finetune.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                        "history": history, "best_validation_accuracy": best},
                                                       indent=2) + "\n")


if __name__ == "__main__":
    main()
