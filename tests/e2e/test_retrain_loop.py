"""The whole review loop for real on the kubelet node, under load from start to end.

A champion trained on a shifted subset of iris (only the flowers with wide sepals, and a strongly
regularised model) serves the Model's alias; the narrow-sepal flowers it never saw come in and
are answered with low confidence, so the server captures them on the volume; a person (a script
driving headless Chromium through the review page, keyboard only) confirms or corrects 20 of
them; the labelledRows trigger refreshes the feedback Dataset (a new version: the base rows plus
the labelled ones), trains a challenger, scores champion and challenger on the same held-out
rows, and moves the alias, which the automatic canary then rolls out. A second run, a sweep whose
trials are all worse, registers its best trial and is refused with the numbers in the Event.
Every answer during the whole run is a 200.
"""

from __future__ import annotations

import http.client
import json
import pathlib
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
import realnode
from sklearn import datasets as sk_datasets

import browser
from conftest import Cluster, wait_until
from e2e.conftest import RealNode, chown_for_workloads, operator_on_real_node
from e2e.load import LoadGenerator
from mlops_workloads.serve import bundle

NAME = "iris"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
THRESHOLD = 0.7
LABELLED = 20
SMALL = {"cpu": "250m", "memory": "512Mi"}
SPLIT = {"train": 0.7, "validation": 0.15, "test": 0.15, "seed": 42}


def _iris() -> pd.DataFrame:
    frame: pd.DataFrame = sk_datasets.load_iris(as_frame=True).frame
    frame.columns = [*FEATURES, "target"]
    return frame


def _trainer(dataset: str, c: float) -> dict[str, Any]:
    return {
        "datasetRef": {"name": dataset},
        "model": {"estimator": "LogisticRegression", "params": {"C": c, "max_iter": 500}},
        "metrics": ["accuracy"],
        "resources": SMALL,
    }


def test_reviewed_rows_train_a_challenger_that_must_beat_the_champion(
    cluster: Cluster,
    real_node: RealNode,
    e2e_namespace: str,
    request: pytest.FixtureRequest,
    tmp_path: pathlib.Path,
) -> None:
    ns = e2e_namespace
    volume = realnode.ensure_data_claim(ns)
    iris = _iris()
    base, shifted = iris[iris.sepal_width >= 2.8], iris[iris.sepal_width < 2.8].reset_index(drop=True)
    (volume / "raw").mkdir(exist_ok=True)
    base.to_csv(volume / "raw" / "base.csv", index=False)
    (volume / "captures").mkdir(exist_ok=True)
    chown_for_workloads(volume / "raw")
    chown_for_workloads(volume / "captures")
    claim = realnode.DATA_CLAIM
    operator = operator_on_real_node(cluster, real_node, ns, request)

    def get(kind: str, name: str = NAME) -> dict[str, Any]:
        return dict((cluster.get(kind, name, ns) or {}).get("status") or {})

    def explain() -> dict[str, Any]:
        return {
            "md": get("modeldeployment"),
            "model": get("model"),
            "plus": get("dataset", "iris-plus"),
            "pods": cluster.kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout,
            "operator": operator.log()[-3000:],
        }

    def until(check: Callable[[], Any], what: str, timeout: float = 300) -> Any:
        return wait_until(check, timeout=timeout, interval=1.0, what=what, explain=explain)

    def dataset(name: str, sources: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "kind": "Dataset",
            "metadata": {"name": name},
            "spec": {
                "sources": sources,
                "schema": {"target": "target", "task": "classification"},
                "split": SPLIT,
                "storage": f"pvc://{claim}/datasets",
                "resources": SMALL,
            },
        }

    base_source = {"file": {"uri": f"pvc://{claim}/raw/base.csv", "format": "csv"}}
    for doc in (
        dataset("iris-base", [base_source]),
        {"kind": "Model", "metadata": {"name": NAME}, "spec": {"description": "iris, retrain e2e"}},
        {
            "kind": "TrainingJob",
            "metadata": {"name": "iris-champion"},
            "spec": {**_trainer("iris-base", 0.01), "registerAs": NAME},
        },
    ):
        cluster.apply({"apiVersion": "mlops.dev/v1alpha1", **doc}, ns)
    until(lambda: [v["version"] for v in get("model").get("versions") or []] == [1], "version 1", timeout=400)
    cluster.kubectl("annotate", "-n", ns, f"models/{NAME}", "alias.mlops.dev/champion=1")
    until(lambda: get("model").get("champion") == 1, "champion -> 1")

    # The champion, read from the volume: the shifted rows are all below the threshold; the load
    # sends the base row it is surest about (never captured, so the review queue holds the shift).
    v1 = get("model")["versions"][0]["modelUri"]
    champion = bundle.load(volume / v1.removeprefix(f"pvc://{claim}/"))
    sure = champion.pipeline.predict_proba(shifted[FEATURES]).max(axis=1)
    assert sure.max() < THRESHOLD, sure
    confidence = champion.pipeline.predict_proba(base[FEATURES]).max(axis=1)
    load_row = base.iloc[int(confidence.argmax())]
    assert confidence.max() > THRESHOLD + 0.03, confidence.max()

    md = {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {
            "model": {"modelRef": {"name": NAME, "alias": "champion"}},
            "replicas": 2,
            "resources": {"cpu": "100m", "memory": "384Mi"},
            "lowConfidenceThreshold": THRESHOLD,
            "canary": {
                "trafficPercent": 50,
                "rollback": {"minRequests": 20, "windowSeconds": 20, "p95LatencyMarginMs": 1000},
            },
            "logging": {
                "storageUri": f"pvc://{claim}/captures",
                "rollSeconds": 5,
                "review": {"enabled": True},
            },
            "retrain": {
                "triggers": {"labelledRows": 15, "newDatasetVersion": False},
                "template": {"trainingJob": _trainer("iris-plus", 1.0)},
                "evaluation": {"metric": "accuracy", "minImprovement": 0.02},
                "cooldownSeconds": 0,
            },
        },
    }
    cluster.apply(md, ns)
    plus = dataset("iris-plus", [base_source, {"feedback": {"modelDeployment": NAME, "labelled": True}}])
    cluster.apply({"apiVersion": "mlops.dev/v1alpha1", **plus}, ns)
    until(
        lambda: (
            (s := get("modeldeployment")).get("phase") == "Ready"
            and s.get("servedModelVersion") == 1
            and ((cluster.get("deployment", f"{NAME}-review", ns) or {}).get("status") or {}).get(
                "readyReplicas"
            )
            == 1
        ),
        "the champion served and the review server ready",
    )
    until(lambda: get("dataset", "iris-plus").get("phase") == "Ready", "iris-plus ready (base rows only)")
    first_plus = get("dataset", "iris-plus")
    assert first_plus["rows"]["input"] == len(base), first_plus["rows"]
    svc = cluster.get("service", NAME, ns)
    review_svc = cluster.get("service", f"{NAME}-review", ns)
    assert svc is not None and review_svc is not None
    host, port = svc["spec"]["clusterIP"], int(svc["spec"]["ports"][0]["port"])
    review = f"http://{review_svc['spec']['clusterIP']}:{review_svc['spec']['ports'][0]['port']}"
    body = {
        "inputs": [
            {"name": k, "shape": [1], "datatype": "FP64", "data": [float(load_row[k])]} for k in FEATURES
        ]
    }

    with LoadGenerator(host, port, f"/v2/models/{NAME}/infer", body) as load:
        load.set_rate(10)
        # The shifted flowers come in, one request each: all answered with low confidence.
        truth: dict[str, int] = {}
        for i, row in shifted.iterrows():
            rid = f"shift-{i}"
            truth[rid] = int(row["target"])
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request(
                "POST",
                f"/v1/models/{NAME}:predict",
                body=json.dumps({"instances": [{k: float(row[k]) for k in FEATURES}]}).encode(),
                headers={"Content-Type": "application/json", "X-Request-Id": rid},
            )
            response = conn.getresponse()
            answer = json.loads(response.read())
            conn.close()
            assert response.status == 200, answer
        until(
            lambda: (
                json.loads(urllib.request.urlopen(f"{review}/api/stats", timeout=5).read())["waiting"]
                >= len(shifted)
            ),
            "the shifted rows waiting for review",
            timeout=90,
        )

        # A person labels 20 of them with the keyboard: Enter when the model is right, the class's
        # digit when it is not.
        labelled = _review_in_chromium(review, truth, tmp_path)
        assert sum(labelled.values()) == LABELLED

        # The labelledRows trigger: refresh, train, evaluate, promote.
        run = until(
            lambda: (
                (h := get("modeldeployment").get("retrain", {}).get("history") or [])
                and h[0]["phase"] in ("Promoted", "Rejected", "Failed")
                and h[0]
            ),
            "retraining run 1 decided",
            timeout=600,
        )
        assert run["phase"] == "Promoted", run
        assert (
            run["trigger"] == "LabelledRows" and run["championVersion"] == 1 and run["challengerVersion"] == 2
        )
        overall = run["overall"]
        assert overall["challenger"] >= overall["champion"] + 0.02, run
        assert overall["rows"] >= run["test"]["rows"] > 0 and run["reviewed"]["rows"] > 0, run
        refreshed = get("dataset", "iris-plus")
        assert refreshed["digest"] != first_plus["digest"]
        assert refreshed["rows"]["input"] == len(base) + LABELLED, refreshed["rows"]
        assert run["datasetDigest"] == refreshed["digest"]

        # The alias moved (by the retraining, as the Model's history says) and rolls out through
        # the canary: v2 beside v1, judged, promoted.
        assert get("model").get("champion") == 2
        move = get("model")["aliasHistory"][0]
        assert (move.get("from"), move["to"]) == (1, 2) and "mlops-retrain" in move["by"], move
        until(
            lambda: (
                (s := get("modeldeployment")).get("servedModelVersion") == 2
                and (s.get("canary") or {}).get("state") == "Promoted"
                and s.get("phase") == "Ready"
                and cluster.get("deployment", f"{NAME}-canary", ns) is None
            ),
            "version 2 promoted through the canary",
        )
        until(
            lambda: (
                (get("modeldeployment")["retrain"]["history"][0].get("rollout")) in ("Promoted", "Serving")
            ),
            "the run records the rollout",
            timeout=60,
        )

        # Run 2, by hand, with a sweep whose trials are all worse: its best trial is registered
        # (under the alias challenger), not promoted.
        sweep = {
            "trialTemplate": _trainer("iris-plus", 1.0),
            "searchSpace": [{"name": "C", "type": "categorical", "values": [0.001, 0.002]}],
            "objective": {"metric": "accuracy", "direction": "maximize"},
            "algorithm": {"name": "grid"},
            "maxTrials": 2,
            "parallelism": 2,
        }
        patch = {"spec": {"retrain": {"template": {"trainingJob": None, "sweep": sweep}}}}
        cluster.kubectl("patch", "-n", ns, f"modeldeployment/{NAME}", "--type=merge", "-p", json.dumps(patch))
        cluster.kubectl("annotate", "-n", ns, f"modeldeployment/{NAME}", "mlops.dev/retrain=second")
        second = until(
            lambda: (
                (h := get("modeldeployment").get("retrain", {}).get("history") or [])
                and h[0]["run"] == 2
                and h[0]
            ),
            "retraining run 2 decided",
            timeout=600,
        )
        assert second["phase"] == "Rejected" and second["reason"] == "DidNotBeatChampion", second
        assert (
            second["trigger"] == "Manual"
            and second["challengerVersion"] == 3
            and second["championVersion"] == 2
        )
        assert [v["version"] for v in get("model")["versions"]][:3] == [3, 2, 1]
        assert get("model")["versions"][0]["source"]["kind"] == "HyperparameterSweep"
        aliases = {a["name"]: a["version"] for a in get("model")["aliases"]}
        assert aliases == {"champion": 2, "challenger": 3}, aliases
        time.sleep(5)
        assert get("modeldeployment").get("servedModelVersion") == 2
        answers = load.snapshot()

    failed = [a for a in answers if not a.ok]
    assert not failed, f"{len(failed)} of {len(answers)} requests failed: {failed[:5]}"
    assert len(answers) > 300, len(answers)
    events = [
        e
        for e in cluster.list("event", ns)
        if (e.get("involvedObject") or {}).get("kind") == "ModelDeployment"
        and (e.get("involvedObject") or {}).get("name") == NAME
    ]
    reasons = {e["reason"] for e in events}
    assert {"RetrainingStarted", "ChallengerPromoted", "ChallengerRejected", "CanaryPromoted"} <= reasons, (
        reasons
    )
    rejected = next(e for e in events if e["reason"] == "ChallengerRejected")
    assert "v3 vs champion v2" in rejected["message"] and "accuracy" in rejected["message"], rejected
    print(f"\nrun 1: {run['message']}\nrun 2: {second['message']}\nanswers: {len(answers)}, all 200")


def _review_in_chromium(url: str, truth: dict[str, int], workdir: pathlib.Path) -> dict[str, int]:
    """Label ``LABELLED`` of the waiting rows through the page; counts by action."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    done = {"confirmed": 0, "corrected": 0}
    with browser.chromium(workdir) as driver:
        wait = WebDriverWait(driver, 30)

        def text(element_id: str) -> str:
            return str(driver.find_element(By.ID, element_id).text)

        def shown(element_id: str) -> bool:
            return bool(driver.find_element(By.ID, element_id).is_displayed())

        driver.get(url)
        wait.until(lambda d: shown("name-dialog"))
        driver.find_element(By.ID, "reviewer-name").send_keys("e2e reviewer", Keys.ENTER)
        wait.until(lambda d: not shown("name-dialog"))
        classes = [
            int(str(b.get_attribute("data-class")))
            for b in (wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#classes .class-option")) or [])
        ]
        for count in range(1, LABELLED + 1):
            wait.until(lambda d: shown("card") and text("row-request-id").startswith("shift-"))
            rid, predicted = text("row-request-id"), int(text("prediction"))
            right = truth[rid]
            if predicted == right:
                ActionChains(driver).send_keys(Keys.ENTER).perform()
                done["confirmed"] += 1
            else:
                ActionChains(driver).send_keys(str(classes.index(right) + 1)).perform()
                done["corrected"] += 1
            wait.until(lambda d, n=count: text("done-count") == str(n))
    return done
