"""A TrainingJob and the Dataset versions: datasetRef.version resolved against status.versions,
the digest a run pins (and keeps through a refresh), and the short digest it shows."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pydantic
import pytest

from mlops_operator.api import trainingjob as api
from mlops_operator.reconcile import trainingjob as rtj
from mlops_operator.reconcile import workload as rworkload

NOW = datetime.datetime(2025, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
SETTINGS = rworkload.WorkloadSettings(workload_image="mlops-workloads:test")
OLD, NEW = "0123456789ab" + "1" * 52, "0123456789ac" + "2" * 52


def version(digest: str) -> dict[str, Any]:
    return {"digest": digest, "digestShort": digest[:12], "storageUri": f"pvc://data/ds/{digest}"}


def dataset(*, phase: str = "Ready", reason: str = "Prepared", served: str = NEW) -> dict[str, Any]:
    return {
        "status": {
            "phase": phase,
            "reason": reason,
            "digest": served,
            "storageUri": f"pvc://data/ds/{served}",
            "task": "classification",
            "versions": [version(NEW), version(OLD)],
        }
    }


def make_tj(version_: str | None = None, *, status: dict[str, Any] | None = None) -> api.TrainingJob:
    ref: dict[str, Any] = {"name": "sales"}
    if version_ is not None:
        ref["version"] = version_
    return api.TrainingJob.from_body(
        {
            "metadata": {"name": "fit", "namespace": "ml", "uid": "u", "generation": 1},
            "spec": {"datasetRef": ref, "model": {"estimator": "LogisticRegression"}},
            "status": status or {},
        }
    )


def plan(tj: api.TrainingJob, ds: dict[str, Any] | None, **observed: Any) -> rtj.Plan:
    return rtj.plan(tj, observed=rtj.Observed(dataset=ds, **observed), now=NOW, settings=SETTINGS)


def config(p: rtj.Plan) -> dict[str, Any]:
    """The run's config as its pods read it (the Job's pod template annotation)."""
    job = next(o for o in p.apply if o["kind"] == "Job")
    assert not any(o["kind"] == "ConfigMap" for o in p.apply)
    data: dict[str, Any] = json.loads(job["spec"]["template"]["metadata"]["annotations"]["mlops.dev/config"])
    return data


def test_without_a_version_the_run_pins_the_current_one_and_shows_it() -> None:
    p = plan(make_tj(), dataset())
    assert (p.status.dataset_digest, p.status.dataset_digest_short) == (NEW, NEW[:12])
    assert config(p)["datasetUri"] == f"pvc://data/ds/{NEW}" and config(p)["datasetDigest"] == NEW
    assert any(e.reason == "JobCreated" and f"version {NEW[:12]}" in e.message for e in p.events)
    assert p.status.to_api()["datasetDigestShort"] == NEW[:12]  # the Data printer column


@pytest.mark.parametrize("pin", [OLD, OLD[:12], OLD[:20]])
def test_a_version_pins_an_older_kept_one(pin: str) -> None:
    p = plan(make_tj(pin), dataset())
    assert p.status.dataset_digest == OLD and p.status.dataset_uri == f"pvc://data/ds/{OLD}"
    assert config(p)["datasetUri"] == f"pvc://data/ds/{OLD}"
    assert any(e.reason == "JobCreated" and "(datasetRef.version)" in e.message for e in p.events)


def test_a_pinned_version_is_used_while_the_dataset_refreshes_or_prepares() -> None:
    for state in (dataset(reason="Refreshing"), dataset(phase="Preparing"), dataset(phase="Failed")):
        p = plan(make_tj(OLD[:12]), state)
        assert p.status.dataset_digest == OLD, state


def test_a_version_the_dataset_does_not_keep_fails_with_the_kept_ones_listed() -> None:
    p = plan(make_tj("fedcba987654"), dataset())
    assert (p.status.phase, p.status.reason) == ("Failed", "DatasetVersionNotFound")
    assert p.status.message == (
        "Dataset 'sales' keeps no version 'fedcba987654' (datasetRef.version); "
        f"it keeps: {NEW[:12]}, {OLD[:12]}"
    )
    assert p.apply == [] and p.status.completion_time is not None
    assert ("Warning", "DatasetVersionNotFound", p.status.message) in p.events


def test_a_missing_version_waits_while_the_dataset_is_still_preparing() -> None:
    for state in (dataset(phase="Preparing"), dataset(reason="Refreshing"), dataset(phase="Failed"), {}):
        p = plan(make_tj("fedcba987654"), state)
        assert (p.status.phase, p.status.reason) == ("WaitingForData", "DatasetVersionNotFound"), state
        assert p.apply == []


def test_an_ambiguous_prefix_is_refused() -> None:
    both = dataset()
    both["status"]["versions"] = [version("0123456789ab" + "3" * 52), version(OLD)]
    p = plan(make_tj("0123456789ab"), both)
    assert (p.status.phase, p.status.reason) == ("Failed", "DatasetVersionAmbiguous")
    assert "matches 2 versions" in (p.status.message or "")


def test_a_refresh_never_moves_a_started_or_finished_run() -> None:
    started = plan(make_tj(), dataset(served=OLD))
    tj = make_tj(status=started.status.to_api())
    job = next(o for o in started.apply if o["kind"] == "Job")
    job = {**job, "status": {"active": 1}}
    running = plan(tj, dataset(served=NEW), job=job)
    assert running.status.dataset_digest == OLD and running.status.dataset_digest_short == OLD[:12]
    done = {**job, "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}
    finished = plan(make_tj(status=running.status.to_api()), dataset(served=NEW), job=done)
    assert finished.status.phase == "Succeeded" and finished.status.dataset_digest == OLD
    after = plan(make_tj(status=finished.status.to_api()), dataset(served=NEW))
    assert after.status.dataset_digest == OLD and after.apply == []


def test_a_dataset_whose_refresh_failed_still_serves_its_last_version() -> None:
    p = plan(make_tj(), dataset(reason="RefreshFailed", served=OLD))
    assert p.status.dataset_digest == OLD and p.status.phase == "Pending"


@pytest.mark.parametrize("bad", ["0123456789a", "sha256:0123456789ab", "0123456789AB", "x" * 12, "0" * 65])
def test_the_version_must_look_like_a_digest(bad: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=r"datasetRef\.version"):
        api.TrainingJobSpec.model_validate(
            {"datasetRef": {"name": "sales", "version": bad}, "model": {"estimator": "LogisticRegression"}}
        )


def test_short_digests_drop_the_algorithm() -> None:
    assert rtj.short_digest("sha256:" + "ab" * 32) == "abababababab"
    assert rtj.short_digest(None) is None and rtj.short_digest("") is None
