"""TensorRT latency runtime: the model as an fp16 engine with the budgeted-attention plugin.

UNVERIFIED: this module has never run. TensorRT cannot be installed on the development machines
and no GPU was available (see converters/GPU.md); it follows the TensorRT 10 Python API
(set_input_shape, set_tensor_address, execute_async_v3). Without TensorRT it refuses with the
install hint, before any work.

Why it is built this way: the engine must take a budget per call, so the model is rebuilt from
MODEL.onnx, exported in the trt-plugin flavor (fp16) with budget_thresholds / head_caps as
required inputs (not initializers a parser could fold), and built with
converters.tensorrt.build_engine on the first measure, when the calibration batches give the
optimization profile. `engine=` names a file to reuse (or to build into when it does not exist).
I/O buffers are torch CUDA tensors, allocated once per batch; each call sets shapes and
addresses, launches on one stream and is timed to that stream's completion.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bfexport.errors import BfexportError
from bfexport.exported import ExportedModel
from bfexport.names import ATTENTION_MASK, BUDGET_THRESHOLDS, HEAD_CAPS, INPUT_IDS
from calibration.evaluate import Config
from calibration.latency import Batch, LatencyRuntime, time_ms
from calibration.torch_runtime import cuda_missing
from converters.onnx import TrtPluginExport
from converters.tensorrt import build_engine, import_tensorrt
from converters.tensorrt.plugin import register_plugin


class TensorRTRuntime(LatencyRuntime):
    """A TensorRT engine of the model (fp16, trt-plugin flavor). UNVERIFIED: never run."""

    name = "tensorrt"
    about = ("TensorRT fp16 engine with the budgeted-attention plugin (unverified: never run; needs TensorRT >= 10.9 "
             "and a GPU)")

    def __init__(self, exported: ExportedModel, threads: int | None = None, *,
                 engine: str | Path | None = None) -> None:
        super().__init__(exported, threads)
        self.trt = import_tensorrt()
        register_plugin()  # before deserializing: the engine names the plugin
        self.engine_path = Path(engine) if engine is not None else None
        self.engine: Any = None
        self.context: Any = None
        self.stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]

    @classmethod
    def missing(cls) -> str | None:
        try:
            import_tensorrt()
        except BfexportError as e:
            return str(e)
        return cuda_missing()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "tensorrt": str(self.trt.__version__), "device": torch.cuda.get_device_name(),
                "dtype": "float16", "flavor": TrtPluginExport.flavor,
                "engine": str(self.engine_path) if self.engine_path else "built for this run"}

    def fresh(self) -> TensorRTRuntime:
        """A new execution context on the same engine (building an engine takes minutes)."""
        clone = copy.copy(self)
        clone.context = self.engine.create_execution_context() if self.engine is not None else None
        return clone

    def measure(self, batches: Sequence[Batch], configs: Sequence[Config], repeats: int,
                warmup: int = 1) -> np.ndarray:
        self._load(batches)
        ctx = self.context
        feeds = [{INPUT_IDS: _cuda(ids), ATTENTION_MASK: _cuda(mask)} for ids, mask in batches]
        budgets = [{BUDGET_THRESHOLDS: _cuda(np.asarray([c.thresholds], dtype=np.float32)),
                    HEAD_CAPS: _cuda(np.asarray([c.caps], dtype=np.int64))} for c in configs]
        outputs = [self._outputs({**f, **budgets[0]}) for f in feeds]

        def call(c: int, m: int) -> None:
            inputs = {**feeds[m], **budgets[c]}
            for name, t in inputs.items():
                ctx.set_input_shape(name, tuple(t.shape))
            for name, t in {**inputs, **outputs[m]}.items():
                ctx.set_tensor_address(name, t.data_ptr())
            ctx.execute_async_v3(self.stream.cuda_stream)

        return time_ms(call, configs, batches, repeats=repeats, warmup=warmup, sync=self.stream.synchronize)

    def _load(self, batches: Sequence[Batch]) -> None:
        """Deserialize the engine, first building it with a profile that fits `batches` if there is none."""
        if self.context is not None:
            return
        from converters import export_with_metadata, save_onnx
        from converters.onnx.rebuild import rebuild_model
        from converters.triton import budget_inputs_required

        with tempfile.TemporaryDirectory(prefix="bfexport-trt-") as tmp:
            path = self.engine_path
            if path is None or not path.is_file():
                proto = export_with_metadata(rebuild_model(self.exported), TrtPluginExport(fp16=True))
                onnx_path = save_onnx(budget_inputs_required(proto), Path(tmp) / "model.onnx")
                sizes, lengths = [ids.shape[0] for ids, _ in batches], [ids.shape[1] for ids, _ in batches]
                path = build_engine(onnx_path, path or Path(tmp) / "model.plan", opt_batch=max(sizes),
                                    max_batch=max(sizes), opt_seq=int(np.median(lengths)))
            runtime = self.trt.Runtime(self.trt.Logger(self.trt.Logger.WARNING))
            self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BfexportError(f"TensorRT could not load the engine {path} (built by another TensorRT version?)")
        self.context = self.engine.create_execution_context()

    def _outputs(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Set the input shapes and allocate the output tensors they imply."""
        trt, engine, ctx = self.trt, self.engine, self.context
        for name, t in inputs.items():
            if not ctx.set_input_shape(name, tuple(t.shape)):
                raise BfexportError(f"TensorRT engine: input {name} of shape {tuple(t.shape)} is outside its "
                                    "optimization profile")
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
                  trt.int64: torch.int64, trt.bool: torch.bool}
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        return {n: torch.empty(tuple(ctx.get_tensor_shape(n)), dtype=dtypes[engine.get_tensor_dtype(n)], device="cuda")
                for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT}


def _cuda(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).cuda()
