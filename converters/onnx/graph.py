"""A small ONNX graph builder: named nodes, deterministic names, opset-aware reductions.

The exporters write their graphs with it directly instead of tracing PyTorch, so every op
(and so every saving) in the exported file is chosen, not inferred from a trace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, overload

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INT64 = TensorProto.INT64


class GraphBuilder:
    def __init__(self, opset: int, float_type: int = TensorProto.FLOAT) -> None:
        self.opset = opset
        self.float_type = float_type
        self.np_float = helper.tensor_dtype_to_np_dtype(float_type)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._counts: dict[str, int] = {}
        self._used: set[str] = set()
        self._consts: dict[tuple[str, bytes, tuple[int, ...]], str] = {}

    def fresh(self, hint: str) -> str:
        """A name no other tensor uses: hint, else hint_1, hint_2, ..."""
        n = self._counts.get(hint, 0)
        name = f"{hint}_{n}" if n else hint
        while name in self._used:
            n += 1
            name = f"{hint}_{n}"
        self._counts[hint] = n + 1
        self._used.add(name)
        return name

    @overload
    def op(self, op_type: str, *inputs: str, outputs: Literal[1] = 1, name: str | None = None, **attrs: Any) -> str: ...

    @overload
    def op(self, op_type: str, *inputs: str, outputs: int, name: str | None = None, **attrs: Any) -> list[str]: ...

    def op(self, op_type: str, *inputs: str, outputs: int = 1, name: str | None = None,
           **attrs: Any) -> str | list[str]:
        """Append a node; returns its output name (or a list of names when outputs > 1)."""
        base = self.fresh(name or op_type.lower())
        outs = [base] if outputs == 1 else [f"{base}:{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=base, **attrs))
        return outs[0] if outputs == 1 else outs

    def weight(self, name: str, array: np.ndarray) -> str:
        """A float initializer, cast to the graph's float type."""
        self._claim(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=self.np_float), name))
        return name

    def _claim(self, name: str) -> None:
        if name in self._used:
            raise ValueError(f"tensor name {name} used twice")
        self._used.add(name)

    def const(self, value: Any, dtype: Any = None) -> str:
        """A shared constant; floats take the graph's float type, ints are int64."""
        array = np.asarray(value)
        if dtype is None:
            dtype = self.np_float if array.dtype.kind == "f" else np.int64
        array = array.astype(dtype)
        key = (array.dtype.str, array.tobytes(), array.shape)
        if key not in self._consts:
            name = self.fresh("const")
            self.initializers.append(numpy_helper.from_array(array, name))
            self._consts[key] = name
        return self._consts[key]

    def input(self, name: str, elem_type: int, shape: Sequence[int | str], default: np.ndarray | None = None) -> str:
        """A graph input; with a default it is an overridable initializer (optional at run time)."""
        self._claim(name)
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))
        if default is not None:
            self.initializers.append(numpy_helper.from_array(default, name))
        return name

    def output(self, name: str, elem_type: int, shape: Sequence[int | str]) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: bool) -> str:
        """ReduceSum takes axes as an input from opset 13, the other reductions from 18."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, x, self.const(list(axes)), keepdims=int(keepdims))
        return self.op(op_type, x, axes=list(axes), keepdims=int(keepdims))

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray | None, name: str) -> str:
        """x @ weight.T + bias, weight in PyTorch's (out, in) layout."""
        y = self.op("MatMul", x, self.weight(f"{name}.weight", weight.T), name=name)
        return self.op("Add", y, self.weight(f"{name}.bias", bias), name=f"{name}_bias") if bias is not None else y

    def if_else(self, cond: str, then: Callable[[], str], otherwise: Callable[[], str], name: str) -> str:
        """An `If` on the one-element bool tensor cond, each branch written by a callable that returns
        its output; the branches read the outer graph's tensors, and their constants and weights
        are the outer graph's initializers (so a weight two branches share is stored once)."""
        branches = []
        for label, body in (("then", then), ("else", otherwise)):
            outer, self.nodes = self.nodes, []
            try:
                out = body()
            finally:
                nodes, self.nodes = self.nodes, outer
            branches.append(helper.make_graph(nodes, f"{name}.{label}", [],
                                              [helper.make_tensor_value_info(out, self.float_type, None)]))
        return self.op("If", cond, name=name, then_branch=branches[0], else_branch=branches[1])

    def model(self, name: str, doc: str = "") -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="bfexport", doc_string=doc)
        model.ir_version = min(model.ir_version, 10)  # readable by current ONNX Runtime releases
        return model
