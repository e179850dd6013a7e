"""bfexport: export BudgetFormer models with real per-input head skipping, and calibrate them.

Imports run one way (tests/test_import_direction.py): this package's ground floor <- converters
<- calibration <- bfexport.cli and bfexport.benchmark. The ground floor, one job per module:

  errors             BfexportError: a user mistake, printed as one line.
  files              atomic writes, the output-path policy (check_outputs), bounded JSON reading.
  model              the whole model top to bottom: config checked field by field, the checks of
                     batches and budget rows, Router, attention, Block, the classifier.
  cost               FLOPs of a configuration, per layer and per head count.
  checkpoint         checkpoint directories: safetensors header checked first, never unpickled.
  data               reading .jsonl/.csv/datasets rows, tokenizers, encoding with cheap truncation.
  train              exploration then exploitation training (optionally distilled from a teacher,
                     or with fixed heads); keeps the best epoch; per-example predictions.
  warm_start         train --init: a checkpoint to start from, routers opened to every head,
                     learning-rate groups for routers vs pretrained weights.
  pruning            static head pruning: head importance (Michel et al. 2019), most-used heads.
  names              every name that crosses a module: graph I/O, router tails, metadata keys.
  flavors            export configs as data: one frozen dataclass per flavor, with its facts.
  exported           an exported .onnx: saved atomically, loaded with its metadata, checked
                     against its graph.
  calibration_result calibration.json: what was calibrated, on which model, and applying it.
  ladder_result      ladder.json: operating points top rung first, each with budgets, accuracy, latency.
  runtime            OnnxClassifier: text in, labels out, a budget per call, one shared session.
  ort_custom_ops     ONNX Runtime's stand-in for the TensorRT plugin node (a Python custom op).
  summary            what inspect reports: architecture, cost per layer, behaviour on data.
  timing             the one timing loop (interleaved rounds) and its summary statistics.
  machine            the machine numbers were measured on (CPU, versions, load average).
  hf/                bfexport import: transformers classifiers (architectures as data, weights, tokenizer).
  benchmark/         the bench harness (above calibration).
  cli/               one module per command (the top).
"""

from bfexport.checkpoint import load_checkpoint, save_checkpoint
from bfexport.errors import BfexportError
from bfexport.model import BudgetFormerConfig, BudgetFormerForSequenceClassification
from bfexport.runtime import OnnxClassifier, Prediction

__all__ = ["BfexportError", "BudgetFormerConfig", "BudgetFormerForSequenceClassification", "OnnxClassifier",
           "Prediction", "load_checkpoint", "save_checkpoint"]
