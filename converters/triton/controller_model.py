"""Triton Python-backend model (business logic scripting): the load-adaptive budget controller
written by `bfexport deploy --ladder FILE --slo-p99-ms MS` as NAME_slo/1/model.py.

text (TYPE_STRING) in; logits, head_counts and rung (the ladder rung each text ran at, -1 for a
request that brought its own budget) out. Per batch Triton hands this instance, the controller
(budget_controller.py beside this file, one per instance) picks a rung from the batch size and
the recent latencies; the texts are tokenized by NAME_tokenizer and classified by NAME through
pb_utils.InferenceRequest, with that rung's thresholds and caps as one row per text. A request
carrying budget_thresholds / head_caps is served with them unchanged, on its own. If a batch
fails as a whole, each request is retried alone, so a bad request gets its own error (400 from
the tokenizer) and the others their answers. The counters (requests per rung, moves, own-budget
requests) go to Triton's log on every move and every log_every_s seconds. Needs numpy in the
Python environment of Triton's python-backend stub.
"""

import json
import os
import sys
import time

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from budget_controller import BatchClock, BudgetController, ControllerSettings  # type: ignore[import-not-found]  # noqa: E402,E501

BUDGETS = ("budget_thresholds", "head_caps")
TOKENIZER_OUTPUTS = ("input_ids", "attention_mask", "row_thresholds", "row_caps")
OUTPUTS = ("logits", "head_counts")


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.classifier, self.tokenizer = params["classifier"], params["tokenizer"]
        rungs = json.loads(params["ladder"])
        self.rungs = [(np.asarray([r["thresholds"]], dtype=np.float32), np.asarray([r["caps"]], dtype=np.int64))
                      for r in rungs]
        settings = {"target_p99_ms": float(params["slo_p99_ms"]), "n_rungs": len(rungs),
                    **json.loads(params.get("controller", "{}"))}
        self.controller = BudgetController(ControllerSettings.from_dict(settings))
        self.clock = BatchClock()
        self.instance = args.get("model_instance_name", "")
        self.log_every_s = float(params.get("log_every_s", "10"))
        self.logged_at = time.monotonic()

    def execute(self, requests):
        self.clock.start()
        before = self.controller.rung
        rung = self.controller.choose(len(requests))
        responses = [None] * len(requests)
        controlled = []
        for i, request in enumerate(requests):
            own = [pb_utils.get_input_tensor_by_name(request, name) for name in BUDGETS]
            if any(t is not None for t in own):
                text = pb_utils.get_input_tensor_by_name(request, "text").as_numpy()
                budgets = [pb_utils.Tensor(name, t.as_numpy())
                           for name, t in zip(BUDGETS, own, strict=True) if t is not None]
                responses[i] = self._respond(self._serve(text, budgets), -1)
                self.controller.record_own_budget()
            else:
                controlled.append(i)
        if controlled:
            self._serve_rung([requests[i] for i in controlled], controlled, rung, responses)
        latency_ms = self.clock.stop()
        if controlled:
            self.controller.record(latency_ms, rung, count=len(controlled), service_ms=self.clock.service_ms)
        if rung != before or time.monotonic() - self.logged_at >= self.log_every_s:
            self._log()
        return responses

    def finalize(self):
        self._log()

    def _serve_rung(self, requests, indices, rung, responses):
        """One tokenizer and one classifier call for the whole batch at `rung`; request by
        request when the batch fails as a whole."""
        texts = [pb_utils.get_input_tensor_by_name(r, "text").as_numpy() for r in requests]
        result = self._serve(np.concatenate(texts), self._rows(rung, sum(len(t) for t in texts)))
        if isinstance(result, dict):
            start = 0
            for i, text in zip(indices, texts, strict=True):
                part = {name: value[start:start + len(text)] for name, value in result.items()}
                responses[i] = self._respond(part, rung)
                start += len(text)
            return
        for i, text in zip(indices, texts, strict=True):
            responses[i] = self._respond(self._serve(text, self._rows(rung, len(text))), rung)

    def _rows(self, rung, count):
        thresholds, caps = self.rungs[rung]
        return [pb_utils.Tensor(BUDGETS[0], np.repeat(thresholds, count, axis=0)),
                pb_utils.Tensor(BUDGETS[1], np.repeat(caps, count, axis=0))]

    def _serve(self, text, budgets):
        """Tokenizer then classifier through BLS: {output: array}, or the TritonError of the step that failed."""
        tokenized = pb_utils.InferenceRequest(model_name=self.tokenizer, requested_output_names=list(TOKENIZER_OUTPUTS),
                                              inputs=[pb_utils.Tensor("text", text), *budgets]).exec()
        if tokenized.has_error():
            return tokenized.error()
        ids, mask, thresholds, caps = (pb_utils.get_output_tensor_by_name(tokenized, name).as_numpy()
                                       for name in TOKENIZER_OUTPUTS)
        inputs = [pb_utils.Tensor("input_ids", ids), pb_utils.Tensor("attention_mask", mask),
                  pb_utils.Tensor(BUDGETS[0], thresholds), pb_utils.Tensor(BUDGETS[1], caps)]
        classified = pb_utils.InferenceRequest(model_name=self.classifier, requested_output_names=list(OUTPUTS),
                                               inputs=inputs).exec()
        if classified.has_error():
            return classified.error()
        return {name: pb_utils.get_output_tensor_by_name(classified, name).as_numpy() for name in OUTPUTS}

    def _respond(self, result, rung):
        if not isinstance(result, dict):
            return pb_utils.InferenceResponse(output_tensors=[], error=result)
        rows = len(result["logits"])
        tensors = [pb_utils.Tensor(name, np.ascontiguousarray(result[name])) for name in OUTPUTS]
        tensors.append(pb_utils.Tensor("rung", np.full((rows, 1), rung, dtype=np.int32)))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def _log(self):
        self.logged_at = time.monotonic()
        pb_utils.Logger.log_info("bfexport budget controller " + self.instance + ": "
                                 + json.dumps(self.controller.snapshot()))
