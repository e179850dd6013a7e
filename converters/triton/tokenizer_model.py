"""Triton Python-backend tokenizer for a BudgetFormer classifier (written by bfexport deploy).

text (TYPE_STRING) -> input_ids, attention_mask (int64), with bfexport.data.encode's rules: the
tokenizer in tokenizer.json beside this file, its post-processor's special tokens if it has one
(an imported model's [CLS] ... [SEP]; bfexport's own adds none), truncation to max_length keeping
them, and an empty text as a single [UNK] (with a post-processor a text is never empty). Each
request is right-padded with 0 to the smallest length bucket (config parameter pad_buckets, a JSON
list; [] pads to the longest text) that holds its longest text, so that Triton's dynamic batcher,
which merges only same-shape requests, can batch requests of different lengths. Optional
budget_thresholds / head_caps inputs (one row per text; one row for the whole request too when
max_batch_size is 0) come out as row_thresholds / row_caps with one row per text; absent, the
calibrated defaults from the config's parameters are used. A bad request gets INVALID_ARG (HTTP
400) and one message. Needs `tokenizers` and numpy in the Python environment of Triton's
python-backend stub.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Encoding, Tokenizer

BUDGETS = (("budget_thresholds", "row_thresholds", np.float32), ("head_caps", "row_caps", np.int64))
DTYPES = {"TYPE_INT64": np.int64, "TYPE_FP32": np.float32}
CHARS_PER_TOKEN = 8  # a long text's first prefix: CHARS_PER_TOKEN * max_length characters


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        here = os.path.join(args["model_repository"], args["model_version"])
        self.tokenizer = Tokenizer.from_file(os.path.join(here, "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.max_length = int(params["max_length"])
        self.n_heads = int(params["n_heads"])
        self.buckets = sorted(json.loads(params.get("pad_buckets", "[]")))
        self.one_row_per_request = int(config.get("max_batch_size", 0)) == 0  # else Triton wants one row per text
        self.unk_id = self.tokenizer.token_to_id(params.get("unk_token", "[UNK]"))
        if self.unk_id is None and not self.tokenizer.num_special_tokens_to_add(False):  # else never empty
            raise ValueError("tokenizer.json has no " + params.get("unk_token", "[UNK]") + " token")
        self.defaults = {}
        for name, _, dtype in BUDGETS:
            if "default_" + name in params:
                self.defaults[name] = np.asarray(json.loads(params["default_" + name]), dtype=dtype).reshape(1, -1)
        for name in ["input_ids", "attention_mask"] + [out for name, out, _ in BUDGETS if name in self.defaults]:
            output = pb_utils.get_output_config_by_name(config, name)
            if output is None or DTYPES.get(output["data_type"]) is None:
                raise ValueError("config.pbtxt: output " + name + " missing or not int64 / fp32")

    def execute(self, requests):
        texts, spans = [], []
        for request in requests:
            raw = pb_utils.get_input_tensor_by_name(request, "text").as_numpy().reshape(-1)
            spans.append((len(texts), len(raw)))
            texts.extend(t.decode("utf-8", "replace") if isinstance(t, bytes) else str(t) for t in raw)
        rows = [ids or [self.unk_id] for ids in self._token_ids(texts)]
        responses = []
        for request, (start, count) in zip(requests, spans, strict=True):
            try:
                if count == 0:
                    raise ValueError("text: the request holds no text")
                tensors = self._outputs(request, rows[start:start + count])
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except ValueError as error:
                invalid = pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=invalid))
        return responses

    def _token_ids(self, texts):
        """At most max_length ids per text, as bfexport.data.token_ids gives them: with a
        post-processor (an imported tokenizer), the first max_length - n text ids and then its n
        special tokens ([CLS] ... [SEP]), as transformers truncates. Only a prefix of a long text is
        tokenized: it gives the whole text's first tokens once enough of them come from words
        before its last, possibly cut, word; until then it doubles."""
        special = self.tokenizer.num_special_tokens_to_add(False)
        keep = max(0, self.max_length - special)
        rows: dict[int, Encoding] = {}
        pending, chars = list(range(len(texts))), CHARS_PER_TOKEN * self.max_length
        while pending:
            prefixes = [texts[i][:chars] for i in pending]
            encodings = self.tokenizer.encode_batch(prefixes, add_special_tokens=False)
            retry = []
            for i, prefix, encoding in zip(pending, prefixes, encodings, strict=True):
                words = encoding.word_ids
                if len(prefix) == len(texts[i]) or (len(words) > keep and (keep == 0 or (
                        words[keep - 1] is not None and words[keep - 1] != words[-1]))):
                    encoding.truncate(keep)
                    rows[i] = encoding
                else:
                    retry.append(i)
            pending, chars = retry, 2 * chars
        if special:
            return [self.tokenizer.post_process(rows[i]).ids[:self.max_length] for i in range(len(texts))]
        return [rows[i].ids for i in range(len(texts))]

    def _outputs(self, request, rows):
        longest = max(len(row) for row in rows)
        width = next((bucket for bucket in self.buckets if bucket >= longest), longest)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        tensors = [pb_utils.Tensor("input_ids", ids), pb_utils.Tensor("attention_mask", mask)]
        for name, out, dtype in BUDGETS:
            if name in self.defaults:
                tensors.append(pb_utils.Tensor(out, self._rows(request, name, dtype, len(rows))))
        return tensors

    def _rows(self, request, name, dtype, count):
        default = self.defaults[name]
        given = pb_utils.get_input_tensor_by_name(request, name)
        if given is None:
            return np.repeat(default, count, axis=0)
        values = np.asarray(given.as_numpy())
        rows, layers = ((1, count) if self.one_row_per_request else (count,)), default.shape[1]
        if values.ndim != 2 or values.shape[1] != layers or values.shape[0] not in rows:
            per = "one row per text" + (" or one for the request" if self.one_row_per_request else "")
            raise ValueError(name + ": expected shape [" + str(count) + ", " + str(layers) + "] (" + per
                             + " of " + str(layers) + " values), got " + str(list(values.shape)))
        if name == "budget_thresholds" and not np.all((values > 0) & (values <= 1)):
            raise ValueError("budget_thresholds must lie in (0, 1]")
        if name == "head_caps" and not np.all((values >= 1) & (values <= self.n_heads)):
            raise ValueError("head_caps must lie in [1, " + str(self.n_heads) + "]")
        return np.ascontiguousarray(np.broadcast_to(values.astype(dtype), (count, default.shape[1])))
