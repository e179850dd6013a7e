"""A Triton Inference Server model repository for an exported BudgetFormer, and its offline check.

    deploy("checkpoint/", "models/", DeployOptions(name="sections", calibration="calibration.json"))
    report = check_repository("models/")      # schema + ONNX Runtime + offline tokenizer checks

Three models are written (one directory each; version 1):

  NAME/            the classifier: platform onnxruntime_onnx (1/model.onnx) or tensorrt_plan
                   (1/model.plan); inputs input_ids, attention_mask (int64) and the budget inputs
                   budget_thresholds (fp32) / head_caps (int64), one row of n_layers per sample;
                   outputs logits (labels.txt attached) and head_counts.
  NAME_tokenizer/  a Python-backend model: TYPE_STRING `text` in, input_ids / attention_mask out
                   (bfexport.data.encode's rules: the tokenizer's own special tokens, truncation to
                   max_length, right padding to the request's length bucket (pad_buckets, so that the
                   dynamic batcher merges requests), an empty text -> one [UNK]); it also passes
                   the request's budget_thresholds / head_caps through, or the calibrated defaults.
  NAME_text/       an ensemble wiring text -> NAME_tokenizer -> NAME; budget_thresholds and
                   head_caps are OPTIONAL ensemble inputs (Triton supports optional ensemble
                   inputs since core PR #51, 2022; tested upstream in qa/L0_optional_input).

Why the budgets go through the tokenizer: Triton's ONNX Runtime backend serves ONNX initializers
as optional request inputs only when max_batch_size is 0; with batching it refuses to load a
config that marks any input optional ("optional input ... is not supported for models that
support batching", onnxruntime_backend src/onnxruntime.cc, ValidateInputs). So:

  max_batch_size > 0 (default, dynamic batching): model.onnx is the export with the two budget
      initializers turned into plain graph inputs, REQUIRED on NAME (a direct caller sends one
      row per sample; the calibrated defaults are in the config's parameters and README), and
      optional on NAME_text, whose tokenizer step fills in the defaults per request.
  max_batch_size = 0 (no batching): model.onnx is the export as is; the budget inputs are
      optional on NAME too (rows 1 or batch), defaulting to the values stored in the file.

TensorRT engines have no optional inputs either, so a tensorrt_plan model always takes them as
required inputs (built from the rewritten file). Exports without budget inputs (dense, static)
get a model without them.

Configs are Triton's own ModelConfig messages (tritonclient's model_config_pb2, the `deploy`
extra), written and parsed with protobuf text format: a misspelled field cannot be written, and
one in a repository is a check error. Without tritonclient, deploy and check say so in one line.

Writing is atomic: a new repository is built beside DIR and renamed into place; into an existing
repository each model directory is moved in separately (classifier, tokenizer, then ensemble),
and a failure moves back what was moved. An existing model directory is replaced only with
force=True, and only when bfexport wrote it for the same role (its bfexport.json says so); the
source and the calibration file are never inside what is replaced. All of this is checked
before any work. Before anything is moved, the new models pass `check_repository`.

`check_repository` works offline: every config.pbtxt is parsed as a ModelConfig; each ONNX model
is loaded in ONNX Runtime, checked the way Triton's backend checks it (names, dtypes, dims,
optional inputs) and run on a request shaped as the config says, with and without each optional
input; the tokenizer model's model.py must be byte for byte the one bfexport writes (a check
never runs code from the directory it checks), and bfexport's own copy is run against a stand-in
`triton_python_backend_utils` and compared with bfexport.data.encode; ensembles are checked step
by step and run end to end with that stand-in. A directory with no model directory holding a
config.pbtxt, or with none written by bfexport, is refused. No Triton server is involved.

Modules:
  layout           the repository's fixed names: files, model-name suffixes, roles, tensors
  options          DeployOptions, checked when built, and the model name to deploy under
  schema           Triton's ModelConfig (tritonclient): build, write and parse configs
  calibration_file a calibration.json to deploy with: loaded, checked against the model, applied
  source           what to deploy: a checkpoint or .onnx, calibrated, made into the file Triton serves
  configs          the three config.pbtxt (classifier, tokenizer, ensemble) as ModelConfig messages
  tokenizer_model  the Python-backend tokenizer's model.py (runs inside Triton; written as is)
  readmes          the READMEs: one per classifier and the repository's own
  build            write a deploy's model directories into a staging directory
  install          move staged model directories into a repository (rollback), update its README
  deployment       deploy(): checks before any work, prepare, build, check, install
  model_dir        one model directory as the check reads it, and the report on it
  check_onnx       the check of an ONNX Runtime model and of a TensorRT plan
  offline_backend  run the tokenizer model offline for --check (stand-in triton_python_backend_utils)
  check_tokenizer  the check of bfexport's tokenizer model and of an ensemble
  check            check_repository(): every model directory, checked by its kind
  http_client      a standard-library client of Triton's HTTP API (ready, load, infer, statistics)
  server           a real tritonserver on 127.0.0.1: find it, check the stub's Python, start, load, stop by PID
  ort_model        the python-backend ONNX Runtime stand-in the live check serves model.onnx with (runs in Triton)
  live_cases       the live check's requests (texts, ids, budgets, concurrency, bad requests) and their verdicts
  live_check       check_live(): a repository served by a real tritonserver, compared with OnnxClassifier
  controller       the load-adaptive budget controller: the rung per batch from queue and latency (pure Python)
  controller_model NAME_slo's python-backend model: BLS tokenizer -> classifier at the rung (runs in Triton)
  controller_dir   NAME_slo's directory (deploy --ladder FILE --slo-p99-ms MS): config, files, offline check

`bfexport deploy --check DIR --server` adds check_live to the offline check: a real tritonserver
(--tritonserver, one on PATH, or the nvidia-pytriton wheel of the `serve` extra) serves a temporary
copy of DIR's models; see live_check.
"""

from converters.triton.check import RepoCheck, check_repository
from converters.triton.deployment import DeployResult, deploy
from converters.triton.model_dir import ModelCheck
from converters.triton.options import DeployOptions
from converters.triton.source import budget_inputs_required

__all__ = ["DeployOptions", "DeployResult", "ModelCheck", "RepoCheck", "budget_inputs_required", "check_repository",
           "deploy"]
