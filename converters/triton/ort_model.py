"""Triton Python-backend stand-in for Triton's ONNX Runtime backend (written by `bfexport deploy
--check --server` into a temporary copy of a repository, only when the server has no onnxruntime
backend): runs 1/model.onnx beside this file with ONNX Runtime on the CPU, under the same
config.pbtxt (inputs, outputs, max_batch_size, dynamic batching), as the onnxruntime backend
does: the requests of one execute() that have the same shapes run as one batch, concatenated
along the batch dimension, and are split again; an absent optional input is not fed, so the
model's initializer applies. Needs numpy and onnxruntime in the stub's Python environment.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        here = os.path.join(args["model_repository"], args["model_version"])
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the overridable budget initializers warn "appears in graph inputs"
        self.session = ort.InferenceSession(os.path.join(here, "model.onnx"), options,
                                            providers=["CPUExecutionProvider"])
        self.batching = int(config.get("max_batch_size", 0)) > 0
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        feeds = []
        for request in requests:
            feed = {}
            for name in self.inputs:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is not None:
                    feed[name] = tensor.as_numpy()
            feeds.append(feed)
        responses = [None] * len(requests)
        groups = {}
        for i, feed in enumerate(feeds):
            key = tuple((n, v.shape[1:] if self.batching else v.shape) for n, v in sorted(feed.items()))
            groups.setdefault(key if self.batching else i, []).append(i)
        for members in groups.values():
            try:
                merged = {n: np.concatenate([feeds[i][n] for i in members]) for n in feeds[members[0]]}
                results = self.session.run(self.outputs, merged)
                start = 0
                for i in members:
                    count = len(next(iter(feeds[i].values())))
                    tensors = [pb_utils.Tensor(n, np.ascontiguousarray(r[start:start + count]))
                               for n, r in zip(self.outputs, results, strict=True)]
                    responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                    start += count
            except Exception as error:  # noqa: BLE001 - an ONNX Runtime failure is the request's error
                for i in members:
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[],
                                                              error=pb_utils.TritonError(str(error)))
        return responses
