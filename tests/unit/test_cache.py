"""The watch-fed caches: the store, the informer's handling of LIST and WATCH, and CachedKube's
reads and write-through (over a fake transport; the integration tier runs them for real)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlops_operator import metrics
from mlops_operator.handlers import children
from mlops_operator.k8s import cache


def obj(name: str, rv: int | str | None, ns: str = "a", **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": dict(labels)}
    if rv is not None:
        meta["resourceVersion"] = str(rv)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta}


def test_store_keeps_the_newest_version_and_indexes_labels() -> None:
    store = cache.Store()
    assert store.upsert(obj("j", 5, app="x"))
    assert not store.upsert(obj("j", 4, app="old"))  # an event older than a write of ours
    assert store.get("a", "j")["metadata"]["labels"] == {"app": "x"}  # type: ignore[index]
    assert store.upsert(obj("j", 6, app="y"))
    assert store.select("a", {"app": "x"}) == []  # the old label's index entry went with it
    assert [o["metadata"]["name"] for o in store.select("a", {"app": "y"})] == ["j"]
    store.upsert(obj("k", 1, "b", app="y"))
    assert [o["metadata"]["namespace"] for o in store.select(None, {"app": "y"})] == ["a", "b"]
    assert [o["metadata"]["name"] for o in store.select("b", {})] == ["k"]
    assert len(store) == 2


def test_store_hands_out_copies() -> None:
    store = cache.Store()
    store.upsert(obj("j", 1, app="x"))
    got = store.get("a", "j")
    assert got is not None
    got["metadata"]["labels"]["app"] = "changed"
    store.select("a", {"app": "x"})[0]["metadata"]["name"] = "changed"
    assert store.get("a", "j") == obj("j", 1, app="x")


def test_a_deleted_object_is_not_brought_back_by_an_older_event() -> None:
    store = cache.Store()
    store.upsert(obj("j", 7))
    store.remove("a", "j", tombstone=True)
    assert not store.upsert(obj("j", 7))  # the watch's late MODIFIED of the deleted version
    assert store.get("a", "j") is None
    assert store.upsert(obj("j", 9))  # made again: a newer version
    store.remove("a", "j")  # the watch's DELETED clears the tombstone
    assert store.upsert(obj("j", 3)) and store.get("a", "j") is not None


def test_replace_reports_what_changed_and_what_disappeared() -> None:
    store = cache.Store()
    for o in (obj("same", 1), obj("moved", 2), obj("gone", 3)):
        store.upsert(o)
    changed, removed = store.replace([obj("same", 1), obj("moved", 5), obj("new", 6)])
    assert sorted(o["metadata"]["name"] for o in changed) == ["moved", "new"]
    assert [o["metadata"]["name"] for o in removed] == ["gone"]
    assert store.get("a", "gone") is None


def test_non_numeric_versions_fall_back_to_the_later_arrival() -> None:
    assert cache.newer(obj("j", "x"), obj("j", 9))
    assert cache.newer(obj("j", 2), None)
    assert not cache.newer(obj("j", 2), obj("j", 3))


@pytest.mark.parametrize(
    ("selector", "parsed"),
    [
        (None, {}),
        ("a=b", {"a": "b"}),
        ("a==b, c=d", {"a": "b", "c": "d"}),
        ("a!=b", None),
        ("a in (b)", None),
        ("a", None),
    ],
)
def test_parse_selector(selector: str | None, parsed: dict[str, str] | None) -> None:
    assert cache.parse_selector(selector) == parsed


def test_stripping_drops_managed_fields_last_applied_and_a_pods_spec() -> None:
    pod = {
        "metadata": {
            "name": "p",
            "managedFields": [{"manager": "x"}],
            "annotations": {cache.LAST_APPLIED: "{}", "mlops.dev/config": "{...}", "keep": "1"},
        },
        "spec": {
            "nodeName": "n1",
            "volumes": [{"name": "v"}],
            "containers": [{"name": "c", "image": "i", "env": [{"name": "SECRET_REF"}], "resources": {}}],
        },
        "status": {"phase": "Running"},
    }
    stripped = children.strip_pod(cache.strip_common(pod))
    assert stripped["metadata"] == {"name": "p", "annotations": {"keep": "1"}}
    assert stripped["spec"] == {
        "nodeName": "n1",
        "containers": [{"name": "c", "image": "i", "resources": {}}],
    }
    assert stripped["status"] == {"phase": "Running"}


class FakeKube:
    """What an informer calls: list_versioned and watch, scripted."""

    def __init__(self, lists: list[tuple[list[dict[str, Any]], str]], watches: list[list[dict[str, Any]]]):
        self.lists, self.watches = lists, watches
        self.watched_from: list[str] = []

    def list_versioned(self, *_: Any, **__: Any) -> tuple[list[dict[str, Any]], str]:
        return self.lists.pop(0)

    def watch(self, *_: Any, resource_version: str, **__: Any) -> Any:
        self.watched_from.append(resource_version)
        yield from self.watches.pop(0)


def informer(kube: FakeKube, events: list[tuple[str, str]], **kw: Any) -> cache.Informer:
    return cache.Informer(
        kube=kube,  # type: ignore[arg-type]
        api_version="batch/v1",
        kind="Job",
        on_event=lambda t, o: events.append((t, o["metadata"]["name"])),
        **kw,
    )


def test_informer_lists_watches_from_the_lists_version_and_relists_on_410() -> None:
    events: list[tuple[str, str]] = []
    kube = FakeKube(
        lists=[([obj("a", 10), obj("b", 11)], "11"), ([obj("a", 30), obj("c", 31)], "31")],
        watches=[
            [
                {"type": "MODIFIED", "object": obj("a", 12)},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "20"}}},
            ],
            [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}],
        ],
    )
    inf = informer(kube, events)
    inf.relist()  # the first LIST: the owners' own start-up listing reconciles, no events
    assert inf.synced.is_set() and events == []
    assert inf._watch() is False  # ended by the server: resume from the bookmark
    assert events == [("MODIFIED", "a")]
    assert inf._watch() is True  # 410: the caller relists
    assert kube.watched_from == ["11", "20"]
    inf.relist()
    assert sorted(events[1:]) == [("DELETED", "b"), ("MODIFIED", "a"), ("MODIFIED", "c")]
    assert inf.store.get("a", "b") is None


def test_informer_keeps_the_newest_and_skips_other_namespaces() -> None:
    events: list[tuple[str, str]] = []
    kube = FakeKube(
        lists=[([], "1")],
        watches=[
            [
                {"type": "ADDED", "object": obj("a", 2, seen="event")},
                {"type": "ADDED", "object": obj("elsewhere", 3, ns="zz")},
            ],
            [{"type": "DELETED", "object": obj("a", 6)}],
        ],
    )
    inf = informer(kube, events, keep=cache.NamespaceFilter(("a", "b*")))
    inf.relist()
    inf.store.upsert(obj("a", 5, seen="write"))  # a write of ours came back first
    inf._watch()
    # The older event is not stored, but it still wakes the owner (which reads version 5).
    assert events == [("ADDED", "a")]
    assert inf.store.get("a", "a")["metadata"]["labels"] == {"seen": "write"}  # type: ignore[index]
    inf._watch()
    assert events[-1] == ("DELETED", "a") and len(inf.store) == 0


def test_the_echo_of_a_pass_s_own_write_to_a_child_wakes_nobody() -> None:
    events: list[tuple[str, str]] = []
    echo = {"type": "MODIFIED", "object": obj("j", 8)}
    kube = FakeKube(
        lists=[([], "1")],
        watches=[[echo, {"type": "MODIFIED", "object": obj("j", 9)}], [{**echo, "object": obj("s", 4)}]],
    )
    inf = informer(kube, events)
    inf.relist()
    inf.store.upsert(obj("j", 8))
    inf.store.expect_echo(obj("j", 8))  # CachedKube.apply of the child
    inf.store.upsert(obj("s", 4))  # a status write (no echo expected): its owner must hear of it
    inf._watch()
    assert events == [("MODIFIED", "j")]  # only version 9, somebody else's change
    inf._watch()
    assert events[-1] == ("MODIFIED", "s")


def test_an_error_event_other_than_410_raises() -> None:
    kube = FakeKube(lists=[([], "1")], watches=[[{"type": "ERROR", "object": {"code": 500, "reason": "X"}}]])
    inf = informer(kube, [])
    inf.relist()
    with pytest.raises(cache.client.ApiError):
        inf._watch()


class Response:
    def __init__(self, payload: Any) -> None:
        self.data = json.dumps(payload).encode()


class FakeApiClient:
    """The transport under CachedKube: answers and records each request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.answers: dict[tuple[str, str], Any] = {}

    def call_api(self, path: str, method: str, **kw: Any) -> Response:
        self.requests.append((method, path))
        return Response(self.answers.get((method, path), {"items": [], "metadata": {"resourceVersion": "1"}}))

    def close(self) -> None:
        pass


def synced(
    kube: cache.CachedKube, api_version: str, kind: str, items: list[dict[str, Any]], **kw: Any
) -> None:
    inf = kube.add(cache.Informer(kube=kube, api_version=api_version, kind=kind, **kw))
    for item in items:
        inf.store.upsert(item)
    inf.synced.set()


def test_cached_kube_reads_from_a_synced_informer_and_falls_through_otherwise() -> None:
    api = FakeApiClient()
    kube = cache.CachedKube(api)  # type: ignore[arg-type]
    synced(
        kube,
        "batch/v1",
        "Job",
        [obj("t1-train", 3, **{"app.kubernetes.io/managed-by": "mlops-operator", "job": "t1"})],
        label_selector="app.kubernetes.io/managed-by=mlops-operator",
    )
    before = metrics.CACHE_READS.labels(kind="Job", result="hit")._value.get()
    assert kube.get("batch/v1", "Job", "t1-train", "a") is not None
    assert kube.get("batch/v1", "Job", "t2-train", "a") is None  # not made yet: no GET
    assert [o["metadata"]["name"] for o in kube.list("batch/v1", "Job", "a", label_selector="job=t1")] == [
        "t1-train"
    ]
    assert api.requests == []
    assert metrics.CACHE_READS.labels(kind="Job", result="hit")._value.get() == before + 1
    kube.list("batch/v1", "Job", "a", label_selector="job!=t1")  # not an equality selector
    kube.list("batch/v1", "Job", "a", field_selector="metadata.name=x")
    kube.get("v1", "Secret", "s", "a")  # no informer for it
    assert [m for m, _ in api.requests] == ["GET", "GET", "GET"]


def test_a_cache_that_has_not_synced_reads_through() -> None:
    api = FakeApiClient()
    kube = cache.CachedKube(api)  # type: ignore[arg-type]
    kube.add(cache.Informer(kube=kube, api_version="mlops.dev/v1alpha1", kind="Dataset"))
    kube.get("mlops.dev/v1alpha1", "Dataset", "iris", "a")
    assert api.requests == [("GET", "/apis/mlops.dev/v1alpha1/namespaces/a/datasets/iris")]
    assert kube.list_watched("mlops.dev/v1alpha1", "Dataset") is None


def test_writes_pass_through_to_the_store_and_a_delete_forgets() -> None:
    api = FakeApiClient()
    kube = cache.CachedKube(api)  # type: ignore[arg-type]
    selector = "app.kubernetes.io/managed-by=mlops-operator"
    synced(kube, "batch/v1", "Job", [], label_selector=selector, strip=cache.strip_managed_fields)
    job = obj("t1-train", None, **{"app.kubernetes.io/managed-by": "mlops-operator"})
    answered = {**job, "metadata": {**job["metadata"], "resourceVersion": "8", "managedFields": [{}]}}
    api.answers[("PATCH", "/apis/batch/v1/namespaces/a/jobs/t1-train")] = answered
    kube.apply(job)
    assert kube.informers[("batch/v1", "Job")][0].store.is_echo(answered)
    stored = kube.get("batch/v1", "Job", "t1-train", "a")
    assert stored is not None and stored["metadata"]["resourceVersion"] == "8"
    assert "managedFields" not in stored["metadata"]
    unlabelled = obj("other", None)
    api.answers[("PATCH", "/apis/batch/v1/namespaces/a/jobs/other")] = {
        **unlabelled,
        "metadata": {**unlabelled["metadata"], "resourceVersion": "9"},
    }
    kube.apply(unlabelled)
    assert kube.get("batch/v1", "Job", "other", "a") is None  # not in this informer's set
    kube.delete("batch/v1", "Job", "t1-train", "a")
    assert kube.get("batch/v1", "Job", "t1-train", "a") is None


def test_list_watched_answers_from_every_namespace_the_operator_watches() -> None:
    api = FakeApiClient()
    kube = cache.CachedKube(api)  # type: ignore[arg-type]
    made = children.informers(kube, ("t-*",))
    assert {i.namespace for i in made} == {None}
    assert {i.label_selector for i in made if i.kind == "Pod"} == {children.CHILD_SELECTOR}
    tj = next(i for i in made if i.kind == "TrainingJob")
    assert tj.label_selector is None
    # Only Models and ModelDeployments keep their managedFields (alias history, promotion).
    fields = [{"manager": "argocd"}]
    for informer in made:
        kept = informer.prepare({"metadata": {"name": "x", "managedFields": list(fields)}})
        assert ("managedFields" in kept["metadata"]) is (informer.kind in {"Model", "ModelDeployment"})
    job = next(i for i in made if i.kind == "Job").prepare(
        {
            "metadata": {"name": "j"},
            "spec": {
                "suspend": True,
                "template": {"metadata": {"annotations": {"mlops.dev/config": "{}"}}, "spec": {"x": 1}},
            },
            "status": {"active": 1},
        }
    )
    assert job["spec"] == {
        "suspend": True,
        "template": {"metadata": {"annotations": {"mlops.dev/config": "{}"}}},
    }
    assert job["status"] == {"active": 1}
    for i in made:
        i.synced.set()
    tj._handle({"type": "ADDED", "object": {**obj("x", 1, ns="t-1"), "kind": "TrainingJob"}})
    tj._handle({"type": "ADDED", "object": {**obj("y", 1, ns="other"), "kind": "TrainingJob"}})
    listed = kube.list_watched("mlops.dev/v1alpha1", "TrainingJob")
    assert [o["metadata"]["name"] for o in listed or []] == ["x"]
    # A glob-filtered cluster-wide informer answers per namespace, never for "all namespaces".
    assert kube.list("mlops.dev/v1alpha1", "TrainingJob", "t-1")[0]["metadata"]["name"] == "x"
    assert api.requests == []
    kube.list("mlops.dev/v1alpha1", "TrainingJob")
    assert len(api.requests) == 1


def test_literal_namespaces_get_an_informer_each() -> None:
    api = FakeApiClient()
    kube = cache.CachedKube(api)  # type: ignore[arg-type]
    made = children.informers(kube, ("team-a", "team-b"))
    assert {(i.kind, i.namespace) for i in made if i.kind == "Job"} == {("Job", "team-a"), ("Job", "team-b")}
    for i in made:
        i.synced.set()
    kube.get("batch/v1", "Job", "x", "team-a")
    assert api.requests == []
    kube.get("batch/v1", "Job", "x", "team-c")  # not watched: read through
    assert api.requests == [("GET", "/apis/batch/v1/namespaces/team-c/jobs/x")]
    assert kube.list_watched("batch/v1", "Job") is None  # a children's informer is filtered


def test_a_kind_the_operator_may_not_list_settles_the_start_up_wait_and_reads_through() -> None:
    class Refusing:
        def list_versioned(self, *_: Any, **__: Any) -> Any:
            raise cache.client.ApiError(403, "Forbidden", "models.mlops.dev is forbidden")

    api = FakeApiClient()
    kube = cache.CachedKube(api)  # type: ignore[arg-type]
    inf = kube.add(cache.Informer(kube=Refusing(), api_version="mlops.dev/v1alpha1", kind="Model"))  # type: ignore[arg-type]
    inf.start()
    try:
        assert kube.wait_synced(timeout=5)
        assert not inf.synced.is_set()
        kube.get("mlops.dev/v1alpha1", "Model", "m", "a")
        assert api.requests == [("GET", "/apis/mlops.dev/v1alpha1/namespaces/a/models/m")]
    finally:
        inf.stop()
