"""The READMEs a deploy writes: one per classifier (inputs, budgets, client) and the repository's own."""

from __future__ import annotations

from typing import Any

from converters.triton.layout import LABELS_FILE, PLATFORMS, README_MARKER
from converters.triton.options import DeployOptions, pad_buckets
from converters.triton.source import Prepared

TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:<yy.mm>-py3"


def model_readme(name: str, prepared: Prepared, options: DeployOptions, tokenizer: str | None,
                 ensemble: str | None) -> str:
    cfg = prepared.exported.config
    L, mbs = cfg.n_layers, options.max_batch_size
    platform = PLATFORMS[options.backend]
    lines = [f"# {name}: BudgetFormer text classifier for Triton", "",
             f"Written by `bfexport deploy` from `{prepared.source['path']}` (flavor {prepared.exported.flavor}, "
             f"platform `{platform}`, max_batch_size {mbs}, dynamic batching "
             f"{'on' if options.batching else 'off'}, {options.instances} instance(s)).", "",
             f"Labels (logits columns, also in `{LABELS_FILE}`): {', '.join(cfg.labels)}.", ""]
    if ensemble:
        lines += [f"## Text in: `{ensemble}`", "",
                  f"Send `text` (TYPE_STRING, BYTES on the wire, {'shape [batch, 1]' if mbs else 'shape [batch]'}). "
                  f"`{tokenizer}` tokenizes it the way bfexport does (no special tokens, truncation to "
                  f"{cfg.max_length} tokens, right padding within the request, an empty text as one [UNK]); "
                  f"`{name}` classifies. Outputs: `logits` [batch, {cfg.n_labels}] and `head_counts` "
                  f"[batch, {L}] (the heads each layer ran for each text).", "",
                  *_padding(pad_buckets(options, cfg.max_length)),
                  f"`{tokenizer}` needs the `tokenizers` package and numpy in the Python environment of Triton's "
                  f"python-backend stub (tokenizer.json was written with tokenizers {tokenizer_version()}; use that "
                  "version or a later one); the repository's README.md says how to provide it.", ""]
    if prepared.budget_inputs != "none":
        lines += ["## Budgets per request", "",
                  f"`budget_thresholds` (FP32) and `head_caps` (INT64) hold {L} values per text (one per layer); "
                  "a lower threshold or cap runs fewer heads: faster, usually a little less accurate.",
                  f"Defaults{' (calibrated)' if prepared.calibration else ''}: budget_thresholds "
                  f"{prepared.thresholds}, head_caps {prepared.caps}.", ""]
        if ensemble:
            lines += [f"- `{ensemble}`: both are OPTIONAL inputs, shape [batch, {L}]"
                      + (" (one row per text)" if mbs else " (one row for all texts, or one per text)")
                      + "; left out, the defaults apply.", ""]
        if prepared.budget_inputs == "required":
            lines += [f"- `{name}` (ids in): both are REQUIRED inputs, shape [batch, {L}]. Triton's "
                      + ("TensorRT backend has no optional inputs"
                         if options.backend == "tensorrt" else
                         "ONNX Runtime backend refuses optional inputs on a model that batches")
                      + "; send the defaults above when you have no budget of your own (they are also in "
                      "the model's config `parameters`). Deploy with `--max-batch-size 0` to make them "
                      "optional on the ONNX Runtime model (no dynamic batching then).", ""]
        else:
            lines += [f"- `{name}` (ids in): both are OPTIONAL inputs, shape [1 or batch, {L}]; left out, the "
                      "defaults stored in model.onnx apply.", ""]
        lines += ["The adaptive graph runs, for each layer, as many heads as the batch's largest budget needs "
                  "(each text still keeps only its own heads), so requests with small budgets gain most when "
                  "they are not batched with large ones.", ""]
    lines += ["## Client", "", "`examples/triton_client.py` in the bfexport repository sends text or ids with a "
              "budget, e.g. `python examples/triton_client.py --model " + (ensemble or name)
              + " --thresholds 0.5 \"some text\"`.", ""]
    return "\n".join(lines)


def _padding(buckets: list[int]) -> list[str]:
    """The README paragraph on the tokenizer's padding and what it does to batching."""
    if not buckets:
        return ["Each request is padded to its own longest text (`--pad-buckets exact`). Triton's dynamic "
                "batcher merges only requests whose inputs have the same shape, so single-text requests of "
                "different lengths run one by one on the classifier; send several texts per request to batch "
                "them. Length buckets (`bfexport deploy --pad-buckets pow2` or `--pad-buckets 32,64,128`) let "
                "requests of similar length merge, at the cost of computing the padding: on CPU instances "
                "that measured slower than exact lengths (bfexport's benchmarks/triton_batching.py: the classifier's "
                "mean batch rose from 1.0 to 1.5 at 16 concurrent clients, throughput fell), so exact is the "
                "default there; measure on your traffic and hardware.", ""]
    return [f"Each request is padded to the smallest of the lengths {', '.join(map(str, buckets))} that holds its "
            "longest text (`bfexport deploy --pad-buckets`). Triton's dynamic batcher merges only requests whose "
            "inputs have the same shape: padded to their exact length, single-text requests almost never merge; "
            "padded to a bucket, requests of similar length can. The price is the padding: a text just past a "
            "bucket boundary is computed at up to twice its length (the padded tokens are masked, so results do "
            "not change). Merging pays only when requests queue up together (concurrent clients) and one batched "
            "run costs less than its requests run one by one; a lone client gets the padding and no batching. "
            "Measure on your traffic (bfexport's benchmarks/triton_batching.py): `--pad-buckets exact` pads each "
            "request to its longest text, `--pad-buckets 32,64,128` picks the lengths.", ""]


def repo_readme(repo_models: list[dict[str, Any]]) -> str:
    models = "\n".join(f"- `{m['name']}` ({m['backend']}): `{m['name']}/README.md`"
                       + (f", text in via `{m['ensemble']}`" if m.get("ensemble") else "") for m in repo_models)
    gpu = any(m["backend"] == "tensorrt" for m in repo_models)
    return f"""{README_MARKER}
# Triton model repository (bfexport)

BudgetFormer classifiers deployed by `bfexport deploy`:

{models}

## Start Triton

With NVIDIA's container (it has the ONNX Runtime, TensorRT and Python backends; the production
setup). The tokenizer models need the `tokenizers` package, which the image does not have:

```
cat > Dockerfile <<'EOF'
FROM {TRITON_IMAGE}
RUN pip install tokenizers
EOF
docker build -t tritonserver-bfexport .
docker run --rm {'--gpus all ' if gpu else ''}-p 8000:8000 -p 8001:8001 -p 8002:8002 \\
    -v "$PWD":/models tritonserver-bfexport tritonserver --model-repository=/models
```

Run it from this directory (or change the `-v` path). `<yy.mm>` is a Triton release: optional
ensemble inputs arrived in 2022 (server core PR #51), so use a recent one. Check:
`curl localhost:8000/v2/health/ready`.

Without Docker, `pip install 'bfexport[serve]'` installs the `nvidia-pytriton` wheel, which
bundles tritonserver 2.51 with the Python backend only: no ONNX Runtime backend, so the
`onnxruntime_onnx` classifiers here do not load on it as they are. With it:

```
bfexport deploy --serve <this directory> --http-port 8000      # until Ctrl-C
bfexport deploy --check <this directory> --server              # serve, compare with bfexport, stop
```

Both serve a temporary copy in which each model.onnx runs through a Python-backend model that
runs ONNX Runtime (this directory is not changed); `--check --server` also compares every answer
with bfexport's own. By hand, tritonserver needs `--backend-directory` (its default is
/opt/tritonserver/backends) holding a python backend with the stub built for the Python the
models import from; on the wheel's server, that serves the Python-backend models (the tokenizers):

```
python3.11 -m venv serve && serve/bin/pip install 'nvidia-pytriton==0.7.0' tokenizers   # brings numpy < 2
SP=$(serve/bin/python -c 'import os, pytriton; print(os.path.dirname(pytriton.__file__))')
mkdir -p backends && cp -r "$SP/tritonserver/backends/python" backends/
cp "$SP/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub" backends/python/
PATH="$PWD/serve/bin:$PATH" LD_LIBRARY_PATH="$SP/../nvidia_pytriton.libs" "$SP/tritonserver/bin/tritonserver" \\
    --model-repository=/path/to/this/directory --backend-directory="$PWD/backends" \\
    --http-address=127.0.0.1 --grpc-address=127.0.0.1 --metrics-address=127.0.0.1 --allow-gpu-metrics=false
```

The Python environment of the python-backend stub: the stub ignores PYTHONPATH and imports from
the first `python3` on the server's PATH (or from the `EXECUTION_ENV_PATH` parameter of a model's
config). The tokenizer models need `tokenizers` and numpy there; with the 2.51 build of the wheel
numpy must be < 2 (numpy 2 kills the stub on the first text request while the model still reports
READY; every later request fails with "Stub process is not healthy"). `bfexport deploy --check DIR
--server --stub-python PATH` checks that environment (numpy < 2, tokenizers, onnxruntime) before
it starts anything.

## Clients and budgets

Each model's README says which inputs it takes. In short: send `text` to `<name>_text`, and
optionally `budget_thresholds` (FP32) / `head_caps` (INT64) with one row of n_layers values per
text to trade accuracy for speed per request; `examples/triton_client.py` in the bfexport
repository does both, over HTTP (`pip install 'tritonclient[http]'`).

## Updating

`bfexport deploy SOURCE --repo <this directory> --name NAME --force` builds the new model
directories beside this one, checks them, then swaps them in one directory at a time (classifier,
tokenizer, ensemble last); other models are left alone. A server started with
`--model-control-mode=poll` picks the change up; with `explicit`, reload the models through the
repository API.

## TensorRT

A `tensorrt_plan` model built from the trt-plugin export embeds the budgeted-attention plugin as
an AOT (ahead-of-time compiled) TensorRT plugin, so Triton should need no `LD_PRELOAD` and no
`--backend-config=tensorrt,plugins=...` for it. UNVERIFIED: no engine has been built or served in
bfexport's development. The engine only runs on the GPU model and TensorRT version it was built
with: build it (`bfexport deploy --backend tensorrt`) where the server runs, with the TensorRT of
the Triton release you use.

## Checking offline

`bfexport deploy --check <this directory>` parses every config.pbtxt against Triton's ModelConfig
schema (needs `pip install 'bfexport[deploy]'`), runs each ONNX model in ONNX Runtime on requests
shaped as its config says, checks that each tokenizer's model.py is byte for byte the one bfexport
writes (it never runs code from the directory it checks) and runs bfexport's own copy against a
stand-in Python backend.
"""


def tokenizer_version() -> str:
    import tokenizers

    return str(getattr(tokenizers, "__version__", "?"))
