"""The runtime registry and the PyTorch / TensorRT runtimes: torch-cpu measured for real (shapes,
order, work done; no wall-clock assertions), the torch-cuda model path in Triton's interpreter,
torch-cuda on a GPU (marked gpu), and one-line refusals where CUDA or TensorRT is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bfexport.errors import BfexportError
from calibration import LatencyTarget, calibrate
from calibration.api import load_model
from calibration.evaluate import Config
from calibration.inputs import collect
from calibration.latency import latency_groups, make_batches
from calibration.runtimes import RUNTIMES, available_runtimes, get_runtime
from calibration.tensorrt_runtime import TensorRTRuntime
from calibration.torch_runtime import TorchCpuRuntime, TorchCudaRuntime
from converters.onnx.rebuild import rebuild_model

ROOT = Path(__file__).resolve().parents[2]
ALL_HEADS, ONE_HEAD = Config((1.0, 1.0), (4, 4)), Config((1.0, 1.0), (1, 1))


@pytest.fixture(scope="module")
def setup(model_path: Path, data_path: Path) -> dict[str, Any]:
    exported, tokenizer = load_model(model_path)
    cal = collect(data_path, exported.config, tokenizer)
    return {"exported": exported, "batches": make_batches(cal, latency_groups(len(cal), 4, 3))}


def test_torch_cpu_times_every_configuration_on_every_batch_in_rotating_order(setup: dict, monkeypatch) -> None:
    rt = TorchCpuRuntime(setup["exported"], threads=1)
    seen: list[tuple[tuple[int, ...], int]] = []
    forward = rt.model.forward

    def recording(ids: torch.Tensor, mask: torch.Tensor, **kw: Any) -> Any:
        seen.append((tuple(kw["caps"].tolist()), ids.shape[1]))
        return forward(ids, mask, **kw)

    monkeypatch.setattr(rt.model, "forward", recording)
    configs, batches = [ALL_HEADS, ONE_HEAD, Config((0.5, 0.5), (4, 2))], setup["batches"]
    threads = torch.get_num_threads()
    ms = rt.measure(batches, configs, repeats=2, warmup=1)
    assert ms.shape == (2, 3, 3) and np.isfinite(ms).all() and (ms > 0).all()
    assert torch.get_num_threads() == threads  # the thread count is set for the measurement only
    timed = seen[len(configs) * len(batches):]
    expected = [(configs[(j + r + m) % 3].caps, batches[m][0].shape[1]) for r in range(2) for m in range(3)
                for j in range(3)]
    assert timed == expected
    info = rt.describe()
    assert info["name"] == "torch-cpu" and info["device"] == "cpu" and info["dtype"] == "float32"
    assert info["threads"] == 1 and info["torch"] == torch.__version__ and "eager" in info["attention"]


def test_forced_budgets_change_the_work_done(setup: dict, monkeypatch) -> None:
    """Counted, not timed: the heads each attention call computes (its gathered slots)."""
    rt = TorchCpuRuntime(setup["exported"], threads=1)
    computed: list[int] = []
    for block in rt.model.blocks:
        selected = block.attn.forward_selected

        def counting(x: torch.Tensor, key_bias: torch.Tensor, sel: Any, selected: Any = selected) -> torch.Tensor:
            computed.append(sel.heads.shape[1])
            return selected(x, key_bias, sel)

        monkeypatch.setattr(block.attn, "forward_selected", counting)
    heads = {}
    for config in (ALL_HEADS, ONE_HEAD, Config((1.0, 1.0), (3, 2))):
        computed.clear()
        rt.measure(setup["batches"], [config], repeats=1, warmup=0)
        heads[config.caps] = computed[:2]  # the first batch's two layers
    assert heads == {(4, 4): [4, 4], (1, 1): [1, 1], (3, 2): [3, 2]}
    assert isinstance(rt.fresh(), TorchCpuRuntime) and rt.fresh().dtype == torch.float32


def test_latency_calibration_end_to_end_on_torch_cpu(model_path: Path, data_path: Path) -> None:
    """Real timings of a tiny model: either outcome (a verified result, or the measured range
    refusing the target) must come from torch-cpu; nothing is asserted about the times."""
    try:
        r = calibrate(model_path, data_path, LatencyTarget(fraction=0.95), runtime="torch-cpu", threads=1,
                      batch_size=8, latency_batches=6, profile_repeats=3, verify_sessions=1, verify_repeats=3)
    except BfexportError as e:
        assert "infeasible" in str(e) and "on torch-cpu" in str(e)
        return
    assert r.runtime["name"] == "torch-cpu" and r.report["latency_table"]["batches"] == 6
    assert r.latency_ms["sessions"] == 1 and np.isfinite(r.latency_ms["p50"])


def test_registry_lists_only_what_can_run_here() -> None:
    assert list(RUNTIMES) == ["ort-cpu", "torch-cpu", "torch-cuda", "tensorrt"]
    assert get_runtime("torch-cpu") is TorchCpuRuntime
    assert {"ort-cpu", "torch-cpu"} <= set(available_runtimes())
    assert ("torch-cuda" in available_runtimes()) == (TorchCudaRuntime.missing() is None)
    with pytest.raises(BfexportError, match="unknown runtime 'tpu'; choose from ort-cpu, torch-cpu"):
        get_runtime("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_torch_cuda_without_cuda_is_refused_in_one_line(setup: dict) -> None:
    with pytest.raises(BfexportError, match=r"runtime 'torch-cuda' cannot run on this machine: PyTorch sees no "
                                            r"CUDA device .*; available here: ort-cpu, torch-cpu") as e:
        get_runtime("torch-cuda")
    assert "\n" not in str(e.value)
    with pytest.raises(BfexportError, match="PyTorch sees no CUDA device"):
        TorchCudaRuntime(setup["exported"])


def test_torch_cuda_refuses_the_triton_interpreter(monkeypatch) -> None:
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert "TRITON_INTERPRET=1 is set" in (TorchCudaRuntime.missing() or "")


def test_tensorrt_without_tensorrt_is_refused_in_one_line(setup: dict, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` fails, even where it is installed
    with pytest.raises(BfexportError, match=r"runtime 'tensorrt' cannot run on this machine: TensorRT is not "
                                            r"installed: pip install 'bfexport\[tensorrt\]'.*; available here"):
        get_runtime("tensorrt")
    with pytest.raises(BfexportError, match="TensorRT is not installed"):
        TensorRTRuntime(setup["exported"])
    assert "tensorrt" not in available_runtimes()


# ---- the torch-cuda model path on CPU, in Triton's interpreter ------------------------------
INTERPRETER_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from calibration.api import load_model
    from calibration.evaluate import Config
    from calibration.inputs import collect
    from calibration.latency import make_batches
    from calibration.torch_runtime import TorchCudaRuntime
    from converters.onnx.rebuild import rebuild_model

    class Interpreted(TorchCudaRuntime):  # torch-cuda's model and measure loop, on the CPU
        name, device = "torch-cuda-interpreted", "cpu"
        missing = classmethod(lambda cls: None)
        sync = lambda self: None

    exported, tokenizer = load_model(sys.argv[1])
    cal = collect(sys.argv[2], exported.config, tokenizer, samples=8)
    rt = Interpreted(exported)
    ids, mask = (torch.from_numpy(a) for a in cal.batch(list(range(8))))
    tau = torch.linspace(0.05, 1.0, 8)[:, None].expand(-1, 2)
    ref, got = rebuild_model(exported).predict(ids, mask, thresholds=tau), rt.model.predict(ids, mask, thresholds=tau)
    ms = rt.measure(make_batches(cal, [[0, 1]]), [Config((1.0, 1.0), (2, 2))], repeats=1, warmup=0)
    print(json.dumps({"err": float((ref.logits - got.logits).abs().max()),
                      "same_heads": bool(torch.equal(ref.head_counts, got.head_counts)),
                      "ks": sorted(set(ref.head_counts.flatten().tolist())), "shape": list(ms.shape),
                      "kernel_blocks": sorted({type(b.attn).__name__ for b in rt.model.blocks})}))
""")


def test_torch_cuda_model_matches_eager_in_triton_interpreter(model_path: Path, data_path: Path) -> None:
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", INTERPRETER_SCRIPT, str(model_path), str(data_path)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["err"] < 1e-5 and r["same_heads"] and len(r["ks"]) > 1
    assert r["shape"] == [1, 1, 1] and r["kernel_blocks"] == ["KernelAttention"]


@pytest.mark.gpu
def test_torch_cuda_runtime_on_a_gpu(setup: dict) -> None:
    """UNRUN so far (no GPU where it was written): the kernel-backed model on CUDA agrees with
    eager PyTorch on CUDA, and measure keeps its contract."""
    rt = get_runtime("torch-cuda")(setup["exported"], threads=1)
    ids, mask = (torch.from_numpy(a).cuda() for a in setup["batches"][0])
    eager = rebuild_model(setup["exported"]).cuda()
    tau = torch.linspace(0.05, 1.0, ids.shape[0], device="cuda")[:, None].expand(-1, 2)
    ref, got = eager.predict(ids, mask, thresholds=tau), rt.model.predict(ids, mask, thresholds=tau)
    assert (ref.logits - got.logits).abs().max() < 1e-4 and torch.equal(ref.head_counts, got.head_counts)
    ms = rt.measure(setup["batches"], [ALL_HEADS, ONE_HEAD], repeats=2)
    assert ms.shape == (2, 2, 3) and np.isfinite(ms).all() and (ms > 0).all()
    info = rt.describe()
    assert info["device"] == torch.cuda.get_device_name() and info["cuda"] and info["triton"]
