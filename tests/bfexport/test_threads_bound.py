"""--threads is bounded wherever it is accepted (the CLI and the Python API): refused before any
file is read or any session is built."""

from __future__ import annotations

import pytest

from bfexport import OnnxClassifier
from bfexport.errors import BfexportError
from bfexport.runtime import MAX_THREADS


@pytest.mark.parametrize("args", [
    ["calibrate", "--threads", "100000", "missing.onnx", "--data", "missing.jsonl", "--target-flops", "0.5"],
    ["bench", "--threads", "100000", "missing-checkpoint"],
])
def test_too_many_threads_is_a_user_error(bfexport, args: list[str]) -> None:
    result = bfexport(*args)
    assert result.returncode == 2
    assert f"Invalid value for '--threads': 100000 is not in the range 1<=x<={MAX_THREADS}" in result.stderr


@pytest.mark.parametrize("threads", [100_000, 0, -1, 2.5, True, "4"])
def test_the_python_api_bounds_threads_too(onnx_file, threads: object) -> None:
    with pytest.raises(BfexportError, match=rf"threads must be an integer in \[1, {MAX_THREADS}\]"):
        OnnxClassifier(onnx_file, threads=threads)  # type: ignore[arg-type]


def test_a_bounded_thread_count_is_accepted(onnx_file) -> None:
    assert OnnxClassifier(onnx_file, threads=1).run  # builds its session
