"""--threads is bounded wherever it is accepted: refused before any file is read."""

from __future__ import annotations

import pytest

from bfexport.cli.args import MAX_THREADS


@pytest.mark.parametrize("args", [
    ["calibrate", "--threads", "100000", "missing.onnx", "--data", "missing.jsonl", "--target-flops", "0.5"],
    ["bench", "--threads", "100000", "missing-checkpoint"],
])
def test_too_many_threads_is_a_user_error(bfexport, args: list[str]) -> None:
    result = bfexport(*args)
    assert result.returncode == 2
    assert f"Invalid value for '--threads': 100000 is not in the range 1<=x<={MAX_THREADS}" in result.stderr
