"""The offline check of bfexport's tokenizer model (its model.py byte for byte bfexport's, then
bfexport's copy run offline against bfexport.data.encode) and of an ensemble (steps wired
consistently, then run end to end: tokenizer -> ONNX Runtime model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bfexport.names import BUDGET_INPUTS
from converters.triton.build import tokenizer_model_py
from converters.triton.layout import MODEL_FILES, ROW_OUTPUTS, TOKENIZER_JSON, TOKENIZER_MODEL_FILE
from converters.triton.model_dir import ModelCheck, ModelDir, dims_match, labels_file, onnx_defaults, session
from converters.triton.offline_backend import TritonError, load_tokenizer_model, run_tokenizer_model, text_request
from converters.triton.options import padded_width
from converters.triton.schema import NUMPY_TYPES, dtype_name, full_dims, string_parameters

CHECK_TEXTS = ["A Library for PARSING json documents", "Gäme about spâce ships, and lasers!", "", "x",
               " ".join(["documentation for the network tools"] * 40)]


def padded(encoded: tuple[np.ndarray, np.ndarray], buckets: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """encode()'s ids and mask right-padded with 0 to the tokenizer's length bucket."""
    extra = padded_width(encoded[0].shape[1], buckets) - encoded[0].shape[1]
    return np.pad(encoded[0], ((0, 0), (0, extra))), np.pad(encoded[1], ((0, 0), (0, extra)))


def model_py_is_ours(version_dir: Path) -> bool:
    """Whether version_dir/model.py is, byte for byte, the tokenizer_model.py bfexport writes
    (read only when it is a regular file, and no further than one byte past that length)."""
    path, ours = version_dir / TOKENIZER_MODEL_FILE, tokenizer_model_py()
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(len(ours) + 1) == ours


def _loaded(model: ModelDir, tokenizers: dict[Path, tuple[Any, Any]]) -> tuple[Any, Any]:
    """bfexport's tokenizer model initialized on `model` (its latest version), and bfexport.data's
    tokenizer of that version's tokenizer.json: built once per check, shared by the tokenizer's
    check and the ensemble's."""
    version = model.version_dirs()[-1]
    if model.path not in tokenizers:
        from bfexport import data

        tokenizers[model.path] = (load_tokenizer_model(model.path, model.config, version.name),
                                  data.tokenizer_from_str((version / TOKENIZER_JSON).read_text(encoding="utf-8")))
    return tokenizers[model.path]


def check_tokenizer(model: ModelDir, check: ModelCheck, tokenizers: dict[Path, tuple[Any, Any]]) -> None:
    params = string_parameters(model.config)
    if params.get("bfexport_role") != "tokenizer":
        check.notes.append("not a bfexport tokenizer model: Python models are checked beyond the schema only "
                           "when bfexport wrote them")
        return
    from bfexport import data

    version = model.version_dirs()
    if not version or not all((version[-1] / f).is_file() for f in (TOKENIZER_MODEL_FILE, TOKENIZER_JSON)):
        check.errors.append("1/model.py and 1/tokenizer.json are required")
        return
    if not model_py_is_ours(version[-1]):
        check.errors.append(f"{version[-1].name}/model.py differs from the one bfexport deploy writes: not run "
                            "(modified, or written by an earlier bfexport; redeploy with --force to restore it)")
        return
    instance, tokenizer = _loaded(model, tokenizers)
    max_length = int(params["max_length"])
    outputs = model.ios("output")
    has_budgets = "default_budget_thresholds" in params
    buckets = [int(b) for b in json.loads(params.get("pad_buckets", "[]"))]
    half = len(CHECK_TEXTS) // 2
    requests = [{"text": text_request(CHECK_TEXTS[:half], model.mbs)},
                {"text": text_request(CHECK_TEXTS[half:], model.mbs)}]
    if has_budgets:
        thresholds = np.asarray(json.loads(params["default_budget_thresholds"]), dtype=np.float32)
        custom = np.broadcast_to(_other_thresholds(thresholds), (len(CHECK_TEXTS) - half, thresholds.size))
        requests[1]["budget_thresholds"] = custom
    responses = run_tokenizer_model(instance, requests)
    for request, response, texts in zip(requests, responses, (CHECK_TEXTS[:half], CHECK_TEXTS[half:]), strict=True):
        if response.has_error():
            check.errors.append(f"tokenizer returned an error: {response.error().message()}")
            continue
        got = {t.name(): t.as_numpy() for t in response.output_tensors()}
        ids, mask = padded(data.encode(tokenizer, texts, max_length), buckets)
        got_ids, got_mask = got.get("input_ids"), got.get("attention_mask")
        if got_ids is None or got_mask is None or not (np.array_equal(got_ids, ids) and np.array_equal(got_mask, mask)):
            check.errors.append("tokenizer ids / mask differ from bfexport.data.encode's padded to the request's "
                                f"length bucket (pad_buckets {buckets})")
        for name, value in got.items():
            io = outputs.get(name)
            if io is None:
                check.errors.append(f"model.py returns {name}, which config.pbtxt does not declare")
            elif value.dtype != NUMPY_TYPES[dtype_name(io)] or not dims_match(
                    full_dims(io, model.mbs), list(value.shape)):
                check.errors.append(f"output {name}: got {value.dtype} {list(value.shape)}, config says "
                                    f"{dtype_name(io)} {full_dims(io, model.mbs)}")
        if has_budgets:
            rows = got.get(ROW_OUTPUTS["budget_thresholds"])
            expected = request.get("budget_thresholds", np.broadcast_to(thresholds, (len(texts), thresholds.size)))
            if rows is None or not np.array_equal(rows, expected):
                check.errors.append("row_thresholds do not carry the request's budget (or the default)")
    if not check.errors:
        check.passed.append(f"model.py is bfexport's byte for byte, and its copy (stand-in Python backend) matches "
                            f"bfexport.data.encode on {len(CHECK_TEXTS)} "
                            "texts (empty, accented, longer than max_length)"
                            + ("; budgets passed through and defaulted" if has_budgets else ""))
    if has_budgets:
        bad = run_tokenizer_model(instance, [{"text": text_request(["x"], model.mbs),
                                           "budget_thresholds": np.full((1, thresholds.size), 2.0, np.float32)}])
        if bad[0].has_error() and bad[0].error().code() == TritonError.INVALID_ARG:
            check.passed.append("an out-of-range budget gets an INVALID_ARG error response (HTTP 400)")
        else:
            check.errors.append("an out-of-range budget_thresholds was accepted")


def _other_thresholds(defaults: np.ndarray) -> np.ndarray:
    """Thresholds unlike the defaults, so a budget that is passed through can be told from one
    that is dropped."""
    return np.where(np.abs(defaults - 0.3) < 1e-6, 0.8, 0.3).astype(np.float32)


def check_ensemble(model: ModelDir, found: dict[str, ModelDir], check: ModelCheck, sessions: dict[Path, Any],
                   tokenizers: dict[Path, tuple[Any, Any]]) -> None:
    inputs, outputs = model.ios("input"), model.ios("output")
    steps = list(model.config.ensemble_scheduling.step)
    if not steps:
        check.errors.append("ensemble without ensemble_scheduling steps")
        return
    produced: dict[str, str] = {n: dtype_name(io) for n, io in inputs.items()}
    for step in steps:
        for key, value in step.output_map.items():
            target = found.get(step.model_name)
            io = target.ios("output").get(key) if target else None
            produced[value] = dtype_name(io) if io else "?"
    for step in steps:
        name = step.model_name
        target = found.get(name)
        if target is None:
            check.errors.append(f"step model {name} is not in the repository")
            continue
        if model.mbs > 0 and not 0 < model.mbs <= target.mbs:
            check.errors.append(f"step {name}: max_batch_size {target.mbs} must be >= the ensemble's {model.mbs}")
        mapped = set()
        for key, value in step.input_map.items():
            mapped.add(key)
            io = target.ios("input").get(key)
            if io is None:
                check.errors.append(f"step {name}: {key} is not an input of {name}")
            elif value not in produced:
                check.errors.append(f"step {name}: {value} is neither an ensemble input nor a step output")
            elif produced[value] not in ("?", dtype_name(io)):
                check.errors.append(f"step {name}: {value} is {produced[value]}, "
                                    f"{name}.{key} wants {dtype_name(io)}")
        for key, io in target.ios("input").items():
            if key not in mapped and not io.optional:
                check.errors.append(f"step {name}: required input {key} is not mapped")
        for key in step.output_map:
            if key not in target.ios("output"):
                check.errors.append(f"step {name}: {key} is not an output of {name}")
    for name, io in outputs.items():
        if produced.get(name) is None:
            check.errors.append(f"output {name} is produced by no step")
        elif produced[name] not in ("?", dtype_name(io)):
            check.errors.append(f"output {name}: config {dtype_name(io)}, step gives {produced[name]}")
    for name, io in inputs.items():
        if io.optional:
            users = [found.get(s.model_name) for s in steps if name in s.input_map.values()]
            for user in users:
                if user is not None:
                    key = next(k for s in steps for k, v in s.input_map.items()
                               if s.model_name == user.name and v == name)
                    user_input = user.ios("input").get(key)
                    if user_input is None or not user_input.optional:
                        check.errors.append(f"optional input {name} feeds the required {user.name}.{key}")
    labels_file(model, check, None)
    if check.errors:
        return
    check.passed.append("steps wired consistently (names, dtypes, optional inputs, max_batch_size)")
    _simulate_ensemble(model, steps, found, check, sessions, tokenizers)


def _simulate_ensemble(model: ModelDir, steps: list[Any], found: dict[str, ModelDir],
                       check: ModelCheck, sessions: dict[Path, Any], tokenizers: dict[Path, tuple[Any, Any]]) -> None:
    """Run text -> tokenizer (stand-in) -> ONNX model, and compare with encode() + the model direct."""
    kinds = [found[s.model_name].kind for s in steps]
    if kinds != ["python", "onnxruntime_onnx"] or model.meta.get("role") != "ensemble":
        check.notes.append("not run end to end: only bfexport's tokenizer + ONNX Runtime ensembles are simulated")
        return
    from bfexport import data

    tok_model, clf_model = (found[s.model_name] for s in steps)
    if not tok_model.version_dirs() or not model_py_is_ours(tok_model.version_dirs()[-1]):
        check.notes.append(f"not run end to end: {tok_model.name}'s model.py is not the one bfexport writes")
        return
    instance, tokenizer = _loaded(tok_model, tokenizers)
    loaded = session(clf_model.version_dirs()[-1] / MODEL_FILES["onnxruntime"], sessions)
    max_length = int(string_parameters(tok_model.config)["max_length"])
    defaults = onnx_defaults(loaded)
    budgets = "budget_thresholds" in model.ios("input")
    cases: list[dict[str, np.ndarray]] = [{}]
    if budgets:
        other = _other_thresholds(defaults["budget_thresholds"].reshape(-1))
        rows = np.broadcast_to(other, (len(CHECK_TEXTS), other.size))
        cases.append({"budget_thresholds": np.ascontiguousarray(rows)})
    for extra in cases:
        tensors: dict[str, np.ndarray] = {"text": text_request(CHECK_TEXTS, model.mbs), **extra}
        for step in steps:
            target = found[step.model_name]
            feed = {k: tensors[v] for k, v in step.input_map.items() if v in tensors}
            if target is tok_model:
                response = run_tokenizer_model(instance, [feed])[0]
                if response.has_error():
                    check.errors.append(f"ensemble run: {tok_model.name} error {response.error().message()}")
                    return
                got = {t.name(): t.as_numpy() for t in response.output_tensors()}
            else:
                wanted = list(step.output_map)
                got = dict(zip(wanted, loaded.run(wanted, feed), strict=True))
            for key, value in step.output_map.items():
                tensors[value] = got[key]
        ids, mask = data.encode(tokenizer, CHECK_TEXTS, max_length)
        direct = {"input_ids": ids, "attention_mask": mask}
        for name in BUDGET_INPUTS if budgets else ():
            value = extra.get(name, defaults[name])
            direct[name] = np.ascontiguousarray(np.broadcast_to(value, (len(CHECK_TEXTS), value.shape[-1])))
        reference = loaded.run(["logits"], direct)[0]
        if not np.allclose(tensors["logits"], reference, atol=1e-5):
            check.errors.append("ensemble logits differ from the model run directly on bfexport.data.encode's ids"
                                + (" with a request budget" if extra else ""))
            return
    check.passed.append("ran end to end (stand-in tokenizer -> ONNX Runtime): logits equal the model's on "
                        "bfexport.data.encode's ids" + (", with and without a request budget" if budgets else ""))
