"""A model file must not be a way to run code: hostile skops files are refused, ours all load.

The hostile corpus is written at test time with ``skops.io.dump`` (and two by editing a
schema by hand), each a payload a loader that trusted module prefixes or skops' defaults
would have let through; every one must be refused with ``UntrustedModel`` naming the type,
before any object is built. Every model the project produces (every registry estimator,
every ``Dataset.spec.features`` combination) must still load and predict the same, and the
generated allowlist must match what those models are made of today.
"""

from __future__ import annotations

import builtins
import datetime
import functools
import importlib
import json
import operator
import os
import pathlib
import subprocess
import zipfile
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from sklearn import pipeline, preprocessing

from mlops_operator.api import estimators
from mlops_operator.api import modeldeployment as md_api
from mlops_operator.reconcile import jobs as rjobs
from mlops_operator.reconcile import modeldeployment as rmd
from mlops_operator.reconcile import workload as rworkload
from mlops_workloads import runtime, skops_io, skops_types
from mlops_workloads.serve import bundle as bundle_mod
from mlops_workloads.serve import demo

OLD_PREFIXES = (
    "sklearn.",
    "numpy.",
    "scipy.",
    "xgboost.",
    "lightgbm.",
    "builtins.",
    "collections.",
    "pandas.",
)


def _ft(func: Any, **kw: Any) -> Any:
    return pipeline.Pipeline([("f", preprocessing.FunctionTransformer(func=func, **kw))])


def hostile(marker: pathlib.Path) -> dict[str, tuple[Any, str]]:
    """name -> (object to dump, a name the refusal must mention)."""
    return {
        "exec": (_ft(builtins.exec), "builtins.exec"),
        "eval": (_ft(builtins.eval), "builtins.eval"),
        "compile": (_ft(builtins.compile), "builtins.compile"),
        "dunder-import": (_ft(builtins.__import__), "builtins.__import__"),
        "os.system": (_ft(os.system), f"{os.system.__module__}.system"),
        "subprocess.Popen": (_ft(subprocess.Popen), "subprocess.Popen"),
        "getattr": (_ft(builtins.getattr, kw_args={"name": "system"}), "builtins.getattr"),
        "importlib": (_ft(importlib.import_module), "importlib.import_module"),
        "numpy.load-pickle": (_ft(np.load, kw_args={"allow_pickle": True}), "numpy.load"),
        "partial-exec": (
            _ft(functools.partial(builtins.exec, f"open({str(marker)!r}, 'w')")),
            "functools.partial",
        ),
        "methodcaller": (_ft(operator.methodcaller("system", "true")), "operator.methodcaller"),
        "attrgetter": (_ft(operator.attrgetter("system")), "operator.attrgetter"),
        "bound-method": (_ft(preprocessing.StandardScaler().fit_transform), "fit_transform (bound method)"),
        "numpy-ufunc": (_ft(np.add), "numpy.add"),  # skops trusts every ufunc by default
        "function-transformer": (
            _ft(None),
            "sklearn.preprocessing._function_transformer.FunctionTransformer",
        ),
        "non-model-object": ({"when": datetime.timedelta(days=1)}, "datetime.timedelta"),
    }


CASES = sorted(hostile(pathlib.Path("/nonexistent")))


@pytest.mark.parametrize("case", CASES)
def test_hostile_file_is_refused_naming_the_type(case: str, tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "pwned"
    obj, expected = hostile(marker)[case]
    path = tmp_path / "model.skops"
    sio.dump(obj, path)
    with pytest.raises(runtime.WorkloadError) as info:
        skops_io.load(path, invalid_reason="InvalidModel")
    assert info.value.reason == "UntrustedModel"
    assert expected in info.value.message
    assert not marker.exists()


def test_exec_reproduction_passed_the_old_prefix_check(tmp_path: pathlib.Path) -> None:
    # The reproduction: everything skops flags starts with an allowlisted prefix, so the
    # old check passed it; now the file is refused before a single object is built.
    path = tmp_path / "model.skops"
    sio.dump(_ft(builtins.exec), path)
    flagged = sio.get_untrusted_types(file=str(path))
    assert flagged and all(t.startswith(OLD_PREFIXES) for t in flagged)
    with pytest.raises(runtime.WorkloadError) as info:
        skops_io.load(path, invalid_reason="InvalidModel")
    assert "builtins.exec" in info.value.message


def _edit_schema(path: pathlib.Path, edit: Any) -> None:
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    files["schema.json"] = json.dumps(edit(json.loads(files["schema.json"]))).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def test_hand_edited_nodes_are_refused(tmp_path: pathlib.Path) -> None:
    # An allowlisted NdArrayNode re-labelled as os.system, which NdArrayNode would call on load.
    path = tmp_path / "model.skops"
    sio.dump(np.zeros(2, dtype=np.float32), path)

    def relabel(schema: dict[str, Any]) -> dict[str, Any]:
        return {**schema, "__module__": "os", "__class__": "system"}

    _edit_schema(path, relabel)
    with pytest.raises(runtime.WorkloadError) as info:
        skops_io.load(path, invalid_reason="InvalidModel")
    assert info.value.reason == "UntrustedModel" and "os.system" in info.value.message

    # A node kind this loader does not know is refused, not skipped.
    def unknown(schema: dict[str, Any]) -> dict[str, Any]:
        return {**schema, "__loader__": "QuantileForestNode"}

    _edit_schema(path, unknown)
    with pytest.raises(runtime.WorkloadError) as info:
        skops_io.load(path, invalid_reason="InvalidModel")
    assert "unknown skops loader QuantileForestNode" in info.value.message


def test_a_file_that_is_not_skops_is_invalid(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(b"\x80\x04 a pickle, not a zip")
    with pytest.raises(runtime.WorkloadError) as info:
        skops_io.load(path, invalid_reason="InvalidModel")
    assert info.value.reason == "InvalidModel"


def test_serving_bundle_refuses_exec_model(tmp_path: pathlib.Path) -> None:
    path = demo.build(tmp_path)
    sio.dump(_ft(builtins.exec), path / "model.skops")
    with pytest.raises(runtime.WorkloadError) as info:
        bundle_mod.load(path)
    assert info.value.reason == "UntrustedModel" and "builtins.exec" in info.value.message


# -- every model of ours loads -------------------------------------------------------------------


@pytest.mark.parametrize("name", skops_types.skops_estimators())  # the PyTorch networks are ONNX
def test_every_registry_estimator_round_trips(name: str, tmp_path: pathlib.Path) -> None:
    entry = estimators.get(name)
    params = dict(skops_types.SMALL) | ({"verbose": -1} if entry.library == "lightgbm" else {})
    module, _, cls_name = entry.import_path.rpartition(".")
    model_cls = getattr(importlib.import_module(module), cls_name)
    x, y = skops_types._data(entry.task, 3)
    model = model_cls(**{k: v for k, v in params.items() if k in entry.params}).fit(x, y)
    fitted = pipeline.Pipeline([("preprocess", preprocessing.StandardScaler().fit(x)), ("model", model)])
    path = tmp_path / "model.skops"
    sio.dump(fitted, path)
    loaded = skops_io.load(path, invalid_reason="InvalidModel")
    np.testing.assert_array_equal(loaded.predict(x), fitted.predict(x))


def test_every_features_combination_round_trips(tmp_path: pathlib.Path) -> None:
    from mlops_operator.api import dataset as dataset_api
    from mlops_workloads.prepare import features

    frame, columns = skops_types._columns_frame()
    x = frame[[c.name for c in columns if c.dtype != "string"]]
    for index, changes in enumerate(skops_types._feature_specs()):
        for task in ("classification", "regression"):
            spec = dataset_api.DatasetSpec.model_validate(
                {"sources": [{"sklearn": {"name": "iris"}}], "storage": "pvc://data/x", **changes}
            )
            fitted = features.fit(frame, columns=columns, target="target", task=task, spec=spec)
            path = tmp_path / f"{index}-{task}.skops"
            sio.dump(fitted.preprocessor, path)
            loaded = skops_io.load(path, invalid_reason="InvalidArtifact")
            np.testing.assert_array_equal(loaded.transform(x), fitted.preprocessor.transform(x))


def test_allowlist_matches_what_our_models_are_made_of() -> None:
    # Fails when an estimator, a features option or a library upgrade brings a type the file
    # lacks (or drops one it lists): run `python -m mlops_workloads.skops_types`.
    # The versions recorded beside the names are information: a patch release that changes no
    # type must not fail a fresh install's test run.
    expected = skops_types.generate()
    committed = json.loads(skops_types.OUT.read_text(encoding="utf-8"))
    assert {k: v for k, v in committed.items() if k != "versions"} == {
        k: v for k, v in expected.items() if k != "versions"
    }


def test_every_reviewed_function_is_used() -> None:
    document = json.loads(skops_types.OUT.read_text(encoding="utf-8"))
    assert sorted(skops_io.REVIEWED_FUNCTIONS) == document["functions"]


# -- the refusal reaches the resource's status ---------------------------------------------------

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
REFUSAL = json.dumps(
    {"ok": False, "reason": "UntrustedModel", "error": "model.skops holds ['builtins.exec (function)']"}
)


def _pod(message: str, *, track: str = "stable", where: str = "lastState") -> dict[str, Any]:
    term = {"exitCode": 1, "reason": "Error", "message": message}
    state = {"waiting": {"reason": "CrashLoopBackOff"}} if where == "lastState" else {"terminated": term}
    cs: dict[str, Any] = {"name": "server", "state": state}
    if where == "lastState":
        cs["lastState"] = {"terminated": term}
    return {
        "metadata": {"name": f"p-{track}", "labels": {"mlops.dev/track": track}},
        "status": {"phase": "Running", "containerStatuses": [cs]},
    }


def _md() -> md_api.ModelDeployment:
    return md_api.ModelDeployment.from_body(
        {
            "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 1},
            "spec": {"model": {"storageUri": "pvc://models/iris/v1"}, "replicas": 1},
            "status": {},
        }
    )


def _plan(pods: list[dict[str, Any]]) -> rmd.Plan:
    observed = rmd.Observed(deployments={"stable": None, "canary": None}, pods=pods)
    return rmd.plan(
        _md(),
        observed=observed,
        now=NOW,
        settings=rworkload.WorkloadSettings(workload_image="mlops-workloads:test"),
    )


@pytest.mark.parametrize("where", ["lastState", "state"])
def test_refused_model_fails_the_modeldeployment(where: str) -> None:
    plan = _plan([_pod(REFUSAL, where=where)])
    failed = plan.status.condition("Failed")
    assert plan.status.phase == "Failed"
    assert failed is not None and failed.status == "True" and failed.reason == "UntrustedModel"
    assert "builtins.exec" in failed.message
    assert ("Warning", "UntrustedModel", failed.message) in plan.events


def test_other_serving_failures_do_not_fail_the_modeldeployment() -> None:
    other = json.dumps({"ok": False, "reason": "ModelNotFound", "error": "no model.skops"})
    for pods in ([_pod(other)], [_pod(REFUSAL, track="canary")], []):
        plan = _plan(pods)
        assert plan.status.phase != "Failed" and plan.status.condition("Failed") is None


def test_refused_preprocessor_fails_the_trainingjob() -> None:
    job = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]}}
    outcome = rjobs.job_outcome(job, [_pod(REFUSAL, where="state")])
    assert (outcome.state, outcome.reason) == ("Failed", "UntrustedModel")
    assert "builtins.exec" in outcome.message


def test_server_exits_before_listening_on_a_refused_model(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops_workloads.serve import __main__ as serve_main
    from mlops_workloads.serve import http

    def no_socket(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the server bound a port with a refused model")

    monkeypatch.setattr(http, "make_socket", no_socket)
    path = demo.build(tmp_path)
    sio.dump(_ft(builtins.exec), path / "model.skops")
    result = tmp_path / "result"
    monkeypatch.setenv("MLOPS_RESULT_PATH", str(result))
    monkeypatch.setattr("sys.argv", ["serve", "--model-dir", str(path)])
    assert serve_main.main() == 1
    written = json.loads(result.read_text())
    assert written["ok"] is False and written["reason"] == "UntrustedModel"
    assert "builtins.exec" in written["error"]
