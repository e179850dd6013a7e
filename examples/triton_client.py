"""Classify text with a BudgetFormer served by Triton, choosing the compute budget per request.

Set up (see the README.md that `bfexport deploy` writes into the repository):

    pip install 'tritonclient[http]'        # or: pip install 'bfexport[deploy]'
    bfexport deploy ckpt --repo models --name sections [--calibration calibration.json]
    docker run ... tritonserver --model-repository=/models    # see models/README.md, or, without Docker:
    bfexport deploy --serve models --http-port 8000           # pip install 'bfexport[serve]'

Text in, through the ensemble that tokenizes on the server:

    python examples/triton_client.py --model sections_text "A library for parsing JSON" "a space game"
    python examples/triton_client.py --model sections_text --thresholds 0.3 "..."       # cheaper
    python examples/triton_client.py --model sections_text --thresholds 0.3,0.9 --caps 2,4 "..."

Token ids in, straight to the classifier (tokenized here with bfexport.data.encode and the
checkpoint's tokenizer.json; needs bfexport installed):

    python examples/triton_client.py --model sections --ids --tokenizer ckpt/tokenizer.json "..."

--thresholds / --caps take one value for every layer or one per layer (comma-separated); they are
sent as `budget_thresholds` (FP32) / `head_caps` (INT64), one row per text. Lower thresholds or
caps run fewer attention heads: faster, usually a little less accurate. Left out, the ensemble
uses the deployed (calibrated) defaults; a batching ids-in model requires them, so this script
then sends the defaults it reads from the model's config parameters.

Prints one JSON line per text: the top label, its softmax probability and the heads run per layer.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np


def _param(config: dict[str, Any], key: str) -> Any:
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return json.loads(value) if value else None


def _inputs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {io["name"]: io for io in config.get("input", [])}


def budget_rows(spec: str | None, n_layers: int, batch: int, dtype: type) -> np.ndarray | None:
    """'0.3' or '0.3,0.5,...' (one per layer) -> one row per text, or None."""
    if spec is None:
        return None
    try:
        values = [float(v) for v in spec.split(",")]
    except ValueError:
        raise SystemExit(f"error: expected comma-separated numbers, got {spec!r}") from None
    if len(values) == 1:
        values *= n_layers
    if len(values) != n_layers:
        raise SystemExit(f"expected 1 or {n_layers} comma-separated values, got {spec!r}")
    return np.tile(np.asarray(values, dtype=dtype), (batch, 1))


def build_inputs(config: dict[str, Any], texts: list[str], *, thresholds: str | None = None,
                 caps: str | None = None, ids: tuple[np.ndarray, np.ndarray] | None = None,
                 defaults: dict[str, Any] | None = None) -> list[tuple[str, np.ndarray]]:
    """The (name, array) pairs of one request for `config` (a Triton model config as JSON):
    `text` for a text model, else input_ids / attention_mask from `ids`; budget rows when given,
    or the `defaults` ({"budget_thresholds": [...], "head_caps": [...]}) where the model requires them."""
    inputs = _inputs(config)
    batching = int(config.get("max_batch_size", 0)) > 0
    out: list[tuple[str, np.ndarray]] = []
    if "text" in inputs:
        text = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
        out.append(("text", text.reshape(-1, 1) if batching else text))
    else:
        if ids is None:
            raise SystemExit(f"{config.get('name')} takes token ids: pass --ids --tokenizer tokenizer.json")
        out += [("input_ids", ids[0]), ("attention_mask", ids[1])]
    for name, spec, dtype in (("budget_thresholds", thresholds, np.float32), ("head_caps", caps, np.int64)):
        io = inputs.get(name)
        if io is None:
            if spec is not None:
                raise SystemExit(f"{config.get('name')} takes no {name}")
            continue
        n_layers = int(io["dims"][-1])
        rows = budget_rows(spec, n_layers, len(texts), dtype)
        if rows is None and not io.get("optional", False):
            rows = np.tile(np.asarray((defaults or {})[name], dtype=dtype), (len(texts), 1))
        if rows is not None:
            out.append((name, rows))
    return out


def http_client() -> tuple[Any, tuple[type[BaseException], ...]]:
    """tritonclient.http and the errors a call to the server raises, or exit with one line:
    without its [http] extra the package raises RuntimeError on import (not ImportError)."""
    try:
        import tritonclient.http as httpclient
        from tritonclient.utils import InferenceServerException
    except (ImportError, RuntimeError) as e:
        raise SystemExit(f"error: Triton's HTTP client is not installed ({type(e).__name__}): "
                         "pip install 'tritonclient[http]' (or 'bfexport[deploy]')") from None
    return httpclient, (InferenceServerException, OSError)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("texts", nargs="+")
    parser.add_argument("--url", default="localhost:8000", help="Triton HTTP endpoint")
    parser.add_argument("--model", required=True, help="NAME_text (text in) or NAME (ids in, with --ids)")
    parser.add_argument("--thresholds", default=None, help="budget threshold(s) in (0, 1]: one, or one per layer")
    parser.add_argument("--caps", default=None, help="head cap(s): one, or one per layer")
    parser.add_argument("--ids", action="store_true", help="tokenize here and send token ids")
    parser.add_argument("--tokenizer", default=None, help="tokenizer.json, with --ids")
    args = parser.parse_args(argv)

    httpclient, server_errors = http_client()
    try:
        client = httpclient.InferenceServerClient(args.url)
        config = client.get_model_config(args.model)
        steps = config.get("ensemble_scheduling", {}).get("step", [])
        classifier = client.get_model_config(steps[-1]["model_name"]) if steps else config
    except server_errors as e:
        raise SystemExit(f"error: Triton at {args.url}, model {args.model}: {e}") from None
    labels = _param(classifier, "bfexport_labels") or []
    defaults = {"budget_thresholds": _param(classifier, "bfexport_default_budget_thresholds"),
                "head_caps": _param(classifier, "bfexport_default_head_caps")}
    ids = None
    if args.ids:
        from bfexport import data  # the same encoding the model was trained with

        tokenizer = data.load_tokenizer(args.tokenizer or sys.exit("--ids needs --tokenizer tokenizer.json"))
        ids = data.encode(tokenizer, args.texts, int(_param(classifier, "bfexport_max_length")))
    request = []
    for name, array in build_inputs(config, args.texts, thresholds=args.thresholds, caps=args.caps, ids=ids,
                                    defaults=defaults):
        tensor = httpclient.InferInput(name, list(array.shape), _wire_type(array))
        tensor.set_data_from_numpy(array)
        request.append(tensor)
    outputs = [httpclient.InferRequestedOutput("logits"), httpclient.InferRequestedOutput("head_counts")]
    try:
        result = client.infer(args.model, request, outputs=outputs)
    except server_errors as e:
        raise SystemExit(f"error: Triton at {args.url}, model {args.model}: {e}") from None
    logits, heads = result.as_numpy("logits"), result.as_numpy("head_counts")
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    for text, p, h in zip(args.texts, probs, heads, strict=True):
        best = int(p.argmax())
        print(json.dumps({"text": text, "label": labels[best] if best < len(labels) else best,
                          "probability": round(float(p[best]), 4), "heads_per_layer": h.tolist()}))


def _wire_type(array: np.ndarray) -> str:
    return {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}.get(array.dtype, "BYTES")


if __name__ == "__main__":
    main()
