"""bfexport deploy: the Triton repository it writes passes the offline check (Triton's schema,
ONNX Runtime runs shaped as the configs say, the tokenizer model against a stand-in Python
backend), wrong inputs fail cleanly with nothing written, and existing models need --force."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import converters.triton.install as triton_install
from bfexport import data
from bfexport.calibration_result import FORMAT, CalibrationResult, fingerprint
from bfexport.checkpoint import save_checkpoint
from bfexport.cli import run
from bfexport.errors import BfexportError
from bfexport.model import BudgetFormerConfig, BudgetFormerForSequenceClassification
from converters import AdaptiveExport, export_with_metadata, load_exported, save_onnx
from converters.triton import DeployOptions, check_repository, deploy
from converters.triton.offline_backend import load_tokenizer_model, run_tokenizer_model, text_request
from converters.triton.schema import config_json, parse_config, render_config, schema, string_parameters

TEXTS = ["a library for parsing json documents quickly", "game about space ships and lasers",
         "python bindings for the foo library", "documentation for the network tools",
         "rust crate for asynchronous io", "perl module providing an interface to sqlite databases"] * 3
LABELS = ["libs", "games", "python", "doc"]
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "triton_client.py"


@pytest.fixture(scope="module")
def tokenizer():
    return data.train_tokenizer(TEXTS, 200)


@pytest.fixture(scope="module")
def model(tokenizer) -> BudgetFormerForSequenceClassification:
    torch.manual_seed(0)
    config = BudgetFormerConfig(vocab_size=tokenizer.get_vocab_size(), max_length=32, d_model=32, n_heads=4,
                                n_layers=2, d_ff=64, labels=LABELS, dropout=0.0)
    model = BudgetFormerForSequenceClassification(config).eval()
    with torch.no_grad():  # let the router vary k across inputs
        for name, p in model.named_parameters():
            if "router" in name:
                p.normal_(0, 1.0)
    return model


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("triton")


@pytest.fixture(scope="module")
def checkpoint(workdir: Path, model, tokenizer) -> Path:
    return save_checkpoint(model, workdir / "ckpt", tokenizer_json=tokenizer.to_str())


@pytest.fixture(scope="module")
def onnx_path(workdir: Path, model, tokenizer) -> Path:
    return save_onnx(export_with_metadata(model, AdaptiveExport(), tokenizer.to_str()), workdir / "model.onnx")


@pytest.fixture(scope="module")
def calibration(workdir: Path, onnx_path: Path) -> Path:
    return make_calibration(onnx_path, workdir / "calibration.json", [0.35, 0.6], [3, 2])


@pytest.fixture(scope="module")
def repo(workdir: Path, checkpoint: Path, calibration: Path) -> Path:
    """One repository, batching (the default), from the checkpoint with a calibration."""
    deploy(checkpoint, workdir / "models", DeployOptions(name="sections", calibration=calibration))
    return workdir / "models"


def make_calibration(model_path: Path, out: Path, thresholds: list[float], caps: list[int]) -> Path:
    exported = load_exported(model_path)
    result = CalibrationResult(thresholds=thresholds, caps=caps, target={"kind": "flops", "ratio": 0.6},
                               achieved_flops_ratio=0.6, objective="agreement", accuracy=None, agreement=1.0,
                               target_met=True, within_tolerance=True, mean_heads_per_layer=[2.0, 2.0],
                               baselines={}, model={"fingerprint": fingerprint(exported), "flavor": exported.flavor},
                               data={}, machine={}, runtime={}, search={}, format=FORMAT)
    return result.save(out)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".") and "deploy-tmp" in p.name)


def config_of(repo: Path, name: str):
    return parse_config((repo / name / "config.pbtxt").read_text())


def tokenizer_instance(model_dir: Path):
    return load_tokenizer_model(model_dir, config_of(model_dir.parent, model_dir.name))


# ---- a repository from a checkpoint passes the whole offline check ------------------------

def test_repository_from_a_checkpoint_passes_the_check(repo: Path) -> None:
    for path in ("README.md", "sections/config.pbtxt", "sections/1/model.onnx", "sections/labels.txt",
                 "sections_tokenizer/config.pbtxt", "sections_tokenizer/1/model.py",
                 "sections_tokenizer/1/tokenizer.json", "sections_text/config.pbtxt", "sections_text/1"):
        assert (repo / path).exists(), path
    assert leftovers(repo.parent) == []
    report = check_repository(repo)
    assert report.ok, report.errors()
    passed = {m.name: " | ".join(m.passed) for m in report.models}
    assert "ran one request shaped as the config says" in passed["sections"]
    assert "matches bfexport.data.encode" in passed["sections_tokenizer"]
    assert "with and without a request budget" in passed["sections_text"]


def test_configs_follow_tritons_batching_rules(repo: Path) -> None:
    model, tok, ens = (config_of(repo, n) for n in ("sections", "sections_tokenizer", "sections_text"))
    assert model.platform == "onnxruntime_onnx" and model.max_batch_size == 8
    assert model.HasField("dynamic_batching") and model.instance_group[0].kind == schema().ModelInstanceGroup.KIND_CPU
    inputs = {io.name: io for io in model.input}
    # batching: no batch dim in dims, and budgets required (Triton's ORT backend refuses optional ones)
    assert list(inputs["input_ids"].dims) == [-1] and list(inputs["budget_thresholds"].dims) == [2]
    assert not any(io.optional for io in inputs.values())
    # ... while the ensemble and the tokenizer take them as optional inputs
    for config in (tok, ens):
        optional = {io.name for io in config.input if io.optional}
        assert optional == {"budget_thresholds", "head_caps"}
    assert ens.platform == "ensemble"
    assert [s.model_name for s in ens.ensemble_scheduling.step] == ["sections_tokenizer", "sections"]
    assert (repo / "sections" / "labels.txt").read_text().split() == LABELS


def test_schema_check_uses_tritons_model_config(repo: Path) -> None:
    pytest.importorskip("tritonclient.grpc")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    for name in ("sections", "sections_tokenizer", "sections_text"):
        config = text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        assert config.name == name
    ensemble = text_format.Parse((repo / "sections_text" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert [i.optional for i in ensemble.input] == [False, True, True]
    report = check_repository(repo)
    assert all("parses as a Triton ModelConfig" in " ".join(m.passed) for m in report.models)


def test_schema_check_rejects_a_misspelled_field(repo: Path, tmp_path: Path) -> None:
    pytest.importorskip("tritonclient.grpc")
    broken = tmp_path / "models"
    shutil.copytree(repo, broken)
    config = broken / "sections" / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size: 8", "max_batch_sise: 8"))
    report = check_repository(broken)
    assert not report.ok
    assert any("max_batch_sise" in e for e in report.errors())
    assert run(["deploy", "--check", str(broken)]) == 1


def test_without_tritonclient_deploy_and_check_say_what_they_need(repo: Path, checkpoint: Path, tmp_path: Path,
                                                                    monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)  # `import tritonclient.grpc` now fails
    with pytest.raises(BfexportError, match=r"pip install 'bfexport\[deploy\]'"):
        check_repository(repo)
    for args in (["deploy", "--check", str(repo)], ["deploy", str(checkpoint), "--repo", str(tmp_path / "new")]):
        capsys.readouterr()
        assert run(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
        assert "pip install 'bfexport[deploy]'" in err
    assert not (tmp_path / "new").exists() and leftovers(tmp_path) == []


def test_the_check_catches_a_config_that_disagrees_with_the_model(repo: Path, tmp_path: Path) -> None:
    broken = tmp_path / "models"
    shutil.copytree(repo, broken)
    config = broken / "sections" / "config.pbtxt"
    text = config.read_text()
    config.write_text(text.replace("dims: [4]", "dims: [5]", 1))  # logits: 4 labels
    errors = check_repository(broken, models=["sections"]).errors()
    assert any("logits" in e and "dims" in e for e in errors)
    config.write_text(text.replace('name: "head_caps"\n  data_type: TYPE_INT64\n  dims: [2]',
                                   'name: "head_caps"\n  data_type: TYPE_INT64\n  dims: [2]\n  optional: true'))
    errors = check_repository(broken, models=["sections"]).errors()
    assert any("refuses optional inputs" in e for e in errors)


# ---- budgets: defaults, per request, and the non-batching layout ---------------------------

def test_calibration_sets_the_defaults_everywhere(repo: Path) -> None:
    params = string_parameters(config_of(repo, "sections"))
    assert json.loads(params["bfexport_default_budget_thresholds"]) == pytest.approx([0.35, 0.6])
    assert json.loads(params["bfexport_default_head_caps"]) == [3, 2]
    tok = string_parameters(config_of(repo, "sections_tokenizer"))
    assert json.loads(tok["default_budget_thresholds"]) == pytest.approx([0.35, 0.6])
    config = load_exported(repo / "sections" / "1" / "model.onnx").config  # the file's own metadata
    assert config.head_caps == [3, 2] and config.budget_thresholds == pytest.approx([0.35, 0.6])


def test_tokenizer_model_matches_encode_under_a_stand_in_backend(repo: Path, tokenizer) -> None:
    instance = tokenizer_instance(repo / "sections_tokenizer")
    texts = ["", "Gäme about SPACE", " ".join(["documentation for the network tools"] * 20), "zzz"]
    budget = np.array([[0.2, 0.9]] * len(texts), dtype=np.float32)
    with_budget, without, bad = run_tokenizer_model(instance, [
        {"text": text_request(texts, 8), "budget_thresholds": budget},
        {"text": text_request(texts[:2], 8)},
        {"text": text_request(["x"], 8), "head_caps": np.array([[9, 9]], dtype=np.int64)}])
    got = {t.name(): t.as_numpy() for t in with_budget.output_tensors()}
    ids, mask = data.encode(tokenizer, texts, 32)
    assert np.array_equal(got["input_ids"], ids) and np.array_equal(got["attention_mask"], mask)
    assert got["input_ids"].shape[1] == 32 and got["input_ids"][0, 0] == tokenizer.token_to_id("[UNK]")
    assert np.array_equal(got["row_thresholds"], budget)
    assert np.array_equal(got["row_caps"], [[3, 2]] * len(texts))  # calibrated default
    defaults = {t.name(): t.as_numpy() for t in without.output_tensors()}
    assert np.allclose(defaults["row_thresholds"], [[0.35, 0.6]] * 2)
    assert bad.has_error() and "head_caps" in bad.error().message()


def test_a_lower_budget_runs_fewer_heads_through_the_deployed_model(repo: Path, tokenizer) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(repo / "sections" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    ids, mask = data.encode(tokenizer, TEXTS[:6], 32)

    def heads(tau: float) -> int:
        feed = {"input_ids": ids, "attention_mask": mask, "budget_thresholds": np.full((6, 2), tau, np.float32),
                "head_caps": np.full((6, 2), 4, np.int64)}
        return int(session.run(["head_counts"], feed)[0].sum())

    assert heads(0.05) < heads(1.0)


def test_without_batching_the_budget_inputs_are_optional(workdir: Path, onnx_path: Path) -> None:
    repo = workdir / "nobatch"
    result = deploy(onnx_path, repo, DeployOptions(name="m", max_batch_size=0))
    assert result.budget_inputs == "optional" and not result.dynamic_batching and result.check["ok"]
    config = config_of(repo, "m")
    assert not config.HasField("dynamic_batching")
    inputs = {io.name: io for io in config.input}
    assert inputs["budget_thresholds"].optional is True
    assert list(inputs["budget_thresholds"].dims) == [-1, 2] and list(inputs["input_ids"].dims) == [-1, -1]
    passed = " ".join(m for c in result.check["models"] for m in c["passed"])
    assert "ran without optional budget_thresholds" in passed and "ran without optional head_caps" in passed
    # the file is the export as is: its initializers still hold the defaults
    assert {i.name for i in load_exported(repo / "m" / "1" / "model.onnx").proto.graph.initializer} >= {
        "budget_thresholds", "head_caps"}


def test_client_example_builds_requests_the_configs_accept(repo: Path, tokenizer) -> None:
    spec = importlib.util.spec_from_file_location("triton_client_example", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    texts = ["a space game", ""]
    ensemble = config_json(config_of(repo, "sections_text"))
    pairs = dict(example.build_inputs(ensemble, texts, thresholds="0.3", caps="2,4"))
    assert pairs["text"].shape == (2, 1) and pairs["budget_thresholds"].tolist() == [[pytest.approx(0.3)] * 2] * 2
    assert pairs["head_caps"].dtype == np.int64 and pairs["head_caps"].tolist() == [[2, 4], [2, 4]]
    assert set(dict(example.build_inputs(ensemble, texts))) == {"text"}  # budgets optional: left out
    # run the ensemble's request through the stand-in tokenizer as Triton would
    instance = tokenizer_instance(repo / "sections_tokenizer")
    response = run_tokenizer_model(instance, [pairs])[0]
    assert not response.has_error()
    # the ids-in model requires budgets when batching: the example sends the configured defaults
    classifier = config_json(config_of(repo, "sections"))
    defaults = {"budget_thresholds": example._param(classifier, "bfexport_default_budget_thresholds"),
                "head_caps": example._param(classifier, "bfexport_default_head_caps")}
    ids = data.encode(tokenizer, texts, example._param(classifier, "bfexport_max_length"))
    feed = dict(example.build_inputs(classifier, texts, ids=ids, defaults=defaults))
    assert feed["head_caps"].tolist() == [[3, 2], [3, 2]]
    import onnxruntime as ort

    session = ort.InferenceSession(str(repo / "sections" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(["logits"], feed)[0].shape == (2, len(LABELS))
    assert example._param(classifier, "bfexport_labels") == LABELS


# ---- wrong inputs: clear errors, nothing written --------------------------------------------

@pytest.mark.parametrize("name", ["a/b", "has space", "", "../up", ".hidden"])
def test_bad_names_are_refused(checkpoint: Path, tmp_path: Path, name: str) -> None:
    with pytest.raises(BfexportError, match="--name"):
        deploy(checkpoint, tmp_path / "models", DeployOptions(name=name))
    assert not (tmp_path / "models").exists() and leftovers(tmp_path) == []


def test_missing_calibration_file(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(BfexportError, match="calibration file not found"):
        deploy(checkpoint, tmp_path / "models", DeployOptions(calibration=tmp_path / "nope.json"))
    assert not (tmp_path / "models").exists() and leftovers(tmp_path) == []


def test_calibration_from_another_model_is_refused(checkpoint: Path, tmp_path: Path, tokenizer) -> None:
    torch.manual_seed(1)
    other = BudgetFormerForSequenceClassification(BudgetFormerConfig(
        vocab_size=tokenizer.get_vocab_size(), max_length=32, d_model=32, n_heads=4, n_layers=2, d_ff=64,
        labels=LABELS)).eval()
    other_path = save_onnx(export_with_metadata(other, AdaptiveExport(), None), tmp_path / "other.onnx")
    wrong = make_calibration(other_path, tmp_path / "other.json", [0.5, 0.5], [4, 4])
    with pytest.raises(BfexportError, match="another model"):
        deploy(checkpoint, tmp_path / "models", DeployOptions(calibration=wrong))
    assert not (tmp_path / "models").exists() and leftovers(tmp_path) == []


def test_repo_path_that_is_a_file(checkpoint: Path, tmp_path: Path) -> None:
    path = tmp_path / "models"
    path.write_text("not a directory")
    with pytest.raises(BfexportError, match="not a directory"):
        deploy(checkpoint, path)
    assert path.read_text() == "not a directory" and leftovers(tmp_path) == []


def test_tensorrt_backend_without_tensorrt(checkpoint: Path, tmp_path: Path) -> None:
    from converters.tensorrt import import_tensorrt

    try:
        import_tensorrt()
    except BfexportError:
        pass
    else:
        pytest.skip("TensorRT is installed here")
    with pytest.raises(BfexportError, match="TensorRT is not installed"):
        deploy(checkpoint, tmp_path / "models", DeployOptions(backend="tensorrt"))
    assert not (tmp_path / "models").exists() and leftovers(tmp_path) == []


def test_tensorrt_layout_with_a_stand_in_engine_builder(checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    """Everything but the engine build itself (which needs TensorRT and a GPU): the plan's place,
    platform, GPU instances and required budget inputs; the check notes the plan was not loaded."""
    import converters.tensorrt as trt_module

    built = {}

    def fake_build(onnx_path, engine_path, **kwargs):
        graph = load_exported(onnx_path).proto.graph
        built.update(kwargs, inputs=[i.name for i in graph.input], initializers={t.name for t in graph.initializer})
        Path(engine_path).write_bytes(b"not an engine")
        return Path(engine_path)

    monkeypatch.setattr(trt_module, "import_tensorrt", lambda: None)
    monkeypatch.setattr(trt_module, "build_engine", fake_build)
    result = deploy(checkpoint, tmp_path / "models", DeployOptions(name="g", backend="tensorrt", max_batch_size=16))
    repo = tmp_path / "models"
    assert (repo / "g" / "1" / "model.plan").read_bytes() == b"not an engine"
    assert not (repo / "g" / "1" / "model.onnx").exists() and not (repo / ".build").exists()
    assert built["max_batch"] == 16 and built["max_seq"] == 32 and built["opt_seq"] <= 32
    assert built["inputs"][2:] == ["budget_thresholds", "head_caps"]  # plain inputs: TensorRT binds them
    assert not {"budget_thresholds", "head_caps"} & built["initializers"]
    config = config_of(repo, "g")
    assert config.platform == "tensorrt_plan"
    assert config.instance_group[0].kind == schema().ModelInstanceGroup.KIND_GPU
    assert result.budget_inputs == "required" and result.check["ok"]
    assert string_parameters(config)["bfexport_flavor"] == "trt-plugin"
    notes = [n for m in result.check["models"] for n in m["notes"]]
    assert any("model.plan not loaded" in n for n in notes)


def test_trt_plugin_file_is_refused_for_onnxruntime(model, tokenizer, tmp_path: Path) -> None:
    from converters import TrtPluginExport

    path = save_onnx(export_with_metadata(model, TrtPluginExport(), tokenizer.to_str()), tmp_path / "plugin.onnx")
    with pytest.raises(BfexportError, match="custom op"):
        deploy(path, tmp_path / "models")
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("options, match", [
    (dict(max_batch_size=0, dynamic_batching=True), "dynamic-batching"),
    (dict(backend="tensorrt", max_batch_size=0), "tensorrt needs"),
    (dict(instances=0), "instances"),
    (dict(backend="triton"), "backend"),
])
def test_option_errors(options: dict, match: str) -> None:
    with pytest.raises(BfexportError, match=match):
        DeployOptions(**options)


def test_onnx_without_tokenizer_deploys_only_the_model(model, tmp_path: Path) -> None:
    path = save_onnx(export_with_metadata(model, AdaptiveExport(), None), tmp_path / "bare.onnx")
    result = deploy(path, tmp_path / "models")
    assert result.models == {"model": "bare"} and any("no tokenizer" in n for n in result.notes)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["README.md", "bare"]


# ---- existing models: --force, other models kept, rollback ----------------------------------

def test_existing_version_needs_force_and_other_models_are_kept(checkpoint: Path, tmp_path: Path) -> None:
    repo = tmp_path / "models"
    (repo / "other" / "1").mkdir(parents=True)
    (repo / "other" / "config.pbtxt").write_text('name: "other"\nbackend: "identity"\n')
    (repo / "README.md").write_text("our own notes\n")
    first = deploy(checkpoint, repo, DeployOptions(name="clf"))
    assert first.replaced == [] and any("not bfexport's" in n for n in first.notes)
    before = (repo / "clf" / "config.pbtxt").read_text()
    with pytest.raises(BfexportError, match="already exist.*--force"):
        deploy(checkpoint, repo, DeployOptions(name="clf", max_batch_size=4))
    assert (repo / "clf" / "config.pbtxt").read_text() == before and leftovers(tmp_path) == []
    second = deploy(checkpoint, repo, DeployOptions(name="clf", max_batch_size=4, force=True))
    assert second.replaced == ["clf", "clf_tokenizer", "clf_text"]
    assert "max_batch_size: 4" in (repo / "clf" / "config.pbtxt").read_text()
    assert (repo / "other" / "config.pbtxt").is_file() and (repo / "README.md").read_text() == "our own notes\n"
    assert sorted(p.name for p in repo.iterdir()) == ["README.md", "clf", "clf_text", "clf_tokenizer", "other"]
    assert leftovers(tmp_path) == []


def test_a_failed_move_puts_everything_back(checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    repo = tmp_path / "models"
    deploy(checkpoint, repo, DeployOptions(name="clf"))
    before = {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    real_replace = os.replace

    def failing(src, dst):  # the ensemble (moved last) fails to move in
        if Path(dst) == repo / "clf_text" and Path(src).parent.name.endswith("deploy-tmp"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(triton_install.os, "replace", failing)
    with pytest.raises(BfexportError, match="models: could not write the repository \\(disk full\\)"):
        deploy(checkpoint, repo, DeployOptions(name="clf", max_batch_size=2, force=True))
    after = {p.relative_to(repo): p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    assert after == before and leftovers(tmp_path) == []


# ---- the command line -------------------------------------------------------------------------

def test_cli_deploys_and_checks(checkpoint: Path, calibration: Path, tmp_path: Path, capsys) -> None:
    repo = tmp_path / "models"
    capsys.readouterr()
    code = run(["deploy", str(checkpoint), "--repo", str(repo), "--name", "clf", "--calibration",
                str(calibration), "--instances", "2", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert result["models"]["ensemble"] == "clf_text" and result["check"]["ok"]
    assert result["calibration"]["caps"] == [3, 2]
    assert "count: 2" in (repo / "clf" / "config.pbtxt").read_text()
    assert run(["deploy", str(checkpoint), "--repo", str(repo), "--name", "clf"]) == 2
    assert "--force" in capsys.readouterr().err
    assert run(["deploy", "--check", str(repo)]) == 0
    assert run(["deploy", "--check", str(repo), str(checkpoint)]) == 2
    assert run(["deploy", str(checkpoint)]) == 2  # no --repo


def test_config_text_round_trip_and_text_escapes() -> None:
    pb = schema()
    config = pb.ModelConfig(name="m", max_batch_size=4, input=[pb.ModelInput(name="x", data_type=pb.TYPE_FP32,
                                                                             dims=[-1, 3], optional=True)])
    config.parameters["k"].string_value = 'say "hi" \\ ok, Gäme'
    config.dynamic_batching.SetInParent()
    parsed = parse_config(render_config(config, "# comment\n"))
    assert parsed == config
    assert parsed.max_batch_size == 4 and list(parsed.input[0].dims) == [-1, 3]
    assert string_parameters(parsed) == {"k": 'say "hi" \\ ok, Gäme'}
    assert parsed.HasField("dynamic_batching")
    with pytest.raises(BfexportError, match="not a valid Triton ModelConfig"):
        parse_config("input [ { name: \"x\" ")


def test_default_model_names_skip_directory_names_that_say_nothing(tmp_path: Path) -> None:
    from converters.triton.options import default_name

    ckpt = tmp_path / "debian-sections" / "checkpoint"
    ckpt.mkdir(parents=True)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.onnx").write_bytes(b"")
    (tmp_path / "out" / "sections v2.onnx").write_bytes(b"")
    assert default_name(ckpt) == "debian-sections"
    assert default_name(tmp_path / "debian-sections") == "debian-sections"
    assert default_name(tmp_path / "out" / "sections v2.onnx") == "sections_v2"
    assert default_name(tmp_path / "out" / "model.onnx") == "budgetformer"  # model, out: nothing said


def test_pad_buckets_default_to_exact_on_cpu_and_powers_of_two_on_tensorrt() -> None:
    from converters.triton.options import POWERS_OF_TWO, pad_buckets, padded_width

    assert pad_buckets(DeployOptions(), 256) == []
    assert pad_buckets(DeployOptions(backend="tensorrt"), 256) == [16, 32, 64, 128, 256]
    assert pad_buckets(DeployOptions(pad_buckets=POWERS_OF_TWO), 100) == [16, 32, 64, 100]
    assert pad_buckets(DeployOptions(pad_buckets=(48, 8, 300)), 256) == [8, 48, 256]
    assert pad_buckets(DeployOptions(pad_buckets=()), 256) == []
    assert [padded_width(n, [16, 32, 64]) for n in (1, 16, 17, 64, 70)] == [16, 16, 32, 64, 70]
    for bad in ((0,), (True,), (2.5,)):
        with pytest.raises(BfexportError, match="--pad-buckets must be positive integers"):
            DeployOptions(pad_buckets=bad)  # type: ignore[arg-type]


def test_a_bucketed_deploy_passes_its_offline_check_with_the_buckets_in_its_config(checkpoint: Path,
                                                                                    tmp_path: Path) -> None:
    from converters.triton.options import POWERS_OF_TWO

    result = deploy(checkpoint, tmp_path / "models", DeployOptions(name="b", pad_buckets=POWERS_OF_TWO))
    assert result.check["ok"]
    config = parse_config((tmp_path / "models" / "b_tokenizer" / "config.pbtxt").read_text())
    assert json.loads(string_parameters(config)["pad_buckets"]) == [16, 32]  # max_length 32
    assert any("bfexport.data.encode" in line for m in result.check["models"] for line in m["passed"])
