"""One export pass for one Model: the MLflow calls, in an order a crash cannot double.

For each version not exported yet, oldest first:

1. find its run by tag (``mlops.dev/model-uid`` + ``mlops.dev/model-version``), else create it
   with those tags (so the run is findable from the moment it exists);
2. unless the run is FINISHED already: log its params and metrics (the same values and
   timestamps every time, which MLflow takes as no change), upload ``model_card.json`` and mark
   it FINISHED;
3. find the registered version by ``run_id``, else create it.

The pass returns what it exported; the handler writes it into ``status.mlflow`` with the rest
of the Model's status. A crash between a call and that write leaves a run or a version the next
pass finds, never a second one. Then the Model's aliases are mirrored onto the registered model
(only when they changed since the last mirror, so a steady Model costs no call).

A failure stops the pass (the versions after it wait for the next one) and starts a backoff
(``BACKOFF_SECONDS`` doubling up to ``MAX_BACKOFF_SECONDS``, kept per Model in this process: a
restarted operator simply tries at once). Registration never waits for MLflow: the pass runs
after the version records are written, and its errors only reach the ``MLflowExported``
condition.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from mlops_operator.api import model as api
from mlops_operator.mlflow_export import client as mclient
from mlops_operator.mlflow_export import mapping

BACKOFF_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 600.0
PASS_BUDGET_SECONDS = 20.0
REASON_UNEXPECTED = "MLflowExportError"  # past it a pass stops between versions; the next pass goes on

LOG = logging.getLogger("mlops_operator.mlflow")


@dataclasses.dataclass
class _Backoff:
    failures: int
    until: float


class Exporter:
    """The export of every Model this operator reconciles, to one tracking server."""

    def __init__(
        self,
        config: mclient.Config,
        *,
        client: mclient.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.client = client or mclient.Client(config)
        self._clock = clock
        self._backoff: dict[str, _Backoff] = {}
        # (alias, version) pairs no lookup found in MLflow (a version deleted before its export):
        # not looked up again on every pass.
        self._unresolved: dict[str, set[tuple[str, int]]] = {}
        self._lock = threading.Lock()

    def forget(self, uid: str) -> None:
        """The Model is gone: drop what this process remembers of it."""
        with self._lock:
            self._backoff.pop(uid, None)
            self._unresolved.pop(uid, None)

    def backing_off(self, uid: str) -> bool:
        with self._lock:
            entry = self._backoff.get(uid)
            return entry is not None and self._clock() < entry.until

    def _failed(self, uid: str) -> None:
        with self._lock:
            failures = (self._backoff[uid].failures if uid in self._backoff else 0) + 1
            delay = min(BACKOFF_SECONDS * 2 ** (failures - 1), MAX_BACKOFF_SECONDS)
            self._backoff[uid] = _Backoff(failures=failures, until=self._clock() + delay)

    def _succeeded(self, uid: str) -> None:
        with self._lock:
            self._backoff.pop(uid, None)

    def sync(
        self,
        resource: api.Model,
        status: api.ModelStatus,
        versions: Sequence[mapping.Version],
        *,
        now: datetime.datetime,
    ) -> mapping.Outcome:
        """Export what ``status.mlflow`` does not list yet and mirror the aliases of ``status``
        (the status this pass computed, aliases moved by new versions included)."""
        t = mapping.target(resource, prefix=self.config.experiment_prefix)
        state = mapping.state_for(status.mlflow, t, tracking_uri=self.config.base_url)
        todo = mapping.pending(versions, state)
        wanted, unknown, refused = mapping.alias_targets(status.aliases, state)
        with self._lock:
            tried = set(self._unresolved.get(t.uid, set()))
        lookups = [a for a in unknown if (a.name, a.version) not in tried]
        if not todo and not lookups and wanted == state.aliases:
            return mapping.Outcome(state=state, refused_aliases=refused)
        if self.backing_off(t.uid):
            return mapping.Outcome(state=state, skipped=True, left=len(todo))
        run = _Pass(self.client, t, now=now, clock=self._clock)
        try:
            outcome = run.go(state, versions, todo, status.aliases, refused=refused, tried=tried)
        except Exception as exc:  # never the Model's failure: the condition says it, a later pass retries
            self._failed(t.uid)
            if isinstance(exc, mclient.MlflowError):
                reason, message = exc.reason, exc.message
                LOG.warning("MLflow export of %s/%s: %s", t.namespace, t.model, message)
            else:
                reason = REASON_UNEXPECTED
                message = f"unexpected {type(exc).__name__} from the export: {str(exc)[:300]}"
                LOG.exception("MLflow export of %s/%s failed", t.namespace, t.model)
            state = mapping.advance(
                state,
                versions=versions,
                exported=[*run.exported, *run.found],
                experiment_id=run.experiment_id,
                aliases=status.aliases,
            )
            return mapping.Outcome(
                state=state,
                exported=run.exported,
                left=len(mapping.pending(versions, state)),
                error_reason=reason,
                error_message=message,
                refused_aliases=refused,
            )
        self._succeeded(t.uid)
        with self._lock:
            self._unresolved[t.uid] = set(run.unresolved)
        return outcome


class _Pass:
    """The calls of one pass; what it exported or found survives an error midway."""

    def __init__(
        self, client: mclient.Client, t: mapping.Target, *, now: datetime.datetime, clock: Callable[[], float]
    ) -> None:
        self.client = client
        self.t = t
        self.now = now
        self.clock = clock
        self.exported: list[api.MLflowVersion] = []
        self.found: list[api.MLflowVersion] = []  # older versions an alias names, found by search
        self.unresolved: set[tuple[str, int]] = set()
        self._experiment_id: str | None = None

    @property
    def experiment_id(self) -> str | None:
        return self._experiment_id

    def experiment_id_now(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = self.experiment()
        return self._experiment_id

    def go(
        self,
        state: api.MLflowExport,
        versions: Sequence[mapping.Version],
        todo: Sequence[mapping.Version],
        aliases: Sequence[api.Alias],
        *,
        refused: Sequence[str],
        tried: set[tuple[str, int]],
    ) -> mapping.Outcome:
        started = self.clock()
        if todo:
            self.experiment_id_now()
            self.client.create_registered_model(
                self.t.registered_model, description=self.t.description, tags=mapping.model_tags(self.t)
            )
        for v in todo:
            if self.exported and self.clock() - started > PASS_BUDGET_SECONDS:
                break
            self.exported.append(self.export(self.experiment_id_now(), v))
        state = mapping.advance(
            state,
            versions=versions,
            exported=self.exported,
            experiment_id=self.experiment_id,
            aliases=aliases,
        )
        _, unknown, _ = mapping.alias_targets(aliases, state)
        coming = {v.version for v in mapping.pending(versions, state)}
        looked: dict[int, api.MLflowVersion | None] = {}
        for alias in unknown:
            pair = (alias.name, alias.version)
            if alias.version in coming:
                continue  # exported by a later pass, then listed
            if pair not in tried and alias.version not in looked:
                looked[alias.version] = self.lookup(self.experiment_id_now(), alias.version)
            if looked.get(alias.version) is None:
                self.unresolved.add(pair)
        self.found = [f for f in looked.values() if f is not None]
        state = mapping.advance(
            state, versions=versions, exported=self.found, experiment_id=self.experiment_id, aliases=aliases
        )
        wanted, _, _ = mapping.alias_targets(aliases, state)
        if wanted != state.aliases:
            self.mirror(wanted)
            state = state.model_copy(update={"aliases": wanted})
        left = len(mapping.pending(versions, state))
        return mapping.Outcome(
            state=state, exported=list(self.exported), left=left, refused_aliases=list(refused)
        )

    def experiment(self) -> str:
        """The Model's experiment, created (or restored from MLflow's trash) when needed."""
        found = self.client.get_experiment_by_name(self.t.experiment)
        if found is None:
            try:
                return self.client.create_experiment(self.t.experiment, mapping.model_tags(self.t))
            except mclient.AlreadyExists:  # made by a concurrent pass in between
                found = self.client.get_experiment_by_name(self.t.experiment)
                if found is None:
                    raise
        experiment_id = str(found["experiment_id"])
        if found.get("lifecycle_stage") == "deleted":
            self.client.restore_experiment(experiment_id)
        return experiment_id

    def _run(self, experiment_id: str, v: mapping.Version) -> dict[str, Any] | None:
        runs = self.client.search_runs(experiment_id, mapping.run_filter(self.t.uid, v.version))
        if not runs:
            return None
        # Two runs only when two operators raced; the oldest is the one kept.
        return min(runs, key=lambda r: (int((r.get("info") or {}).get("start_time") or 0), str(r)))

    def export(self, experiment_id: str, v: mapping.Version) -> api.MLflowVersion:
        start, end = mapping.times(v, now=self.now)
        run = self._run(experiment_id, v)
        if run is None:
            run = self.client.create_run(
                experiment_id,
                run_name=mapping.run_name(self.t, v.version),
                start_time=start,
                tags=mapping.run_tags(self.t, v),
            )
        info = run.get("info") or {}
        run_id = str(info.get("run_id") or info.get("run_uuid"))
        if info.get("status") != "FINISHED":
            params = mapping.params(v)
            metrics = mapping.metrics(v, timestamp=end)
            first = True
            while first or params or metrics:
                first = False
                self.client.log_batch(
                    run_id,
                    params=params[: mapping.PARAMS_PER_BATCH],
                    metrics=metrics[: mapping.METRICS_PER_BATCH],
                )
                params = params[mapping.PARAMS_PER_BATCH :]
                metrics = metrics[mapping.METRICS_PER_BATCH :]
            self.client.upload_artifact(
                str(info.get("artifact_uri") or ""),
                mapping.CARD_FILE,
                mapping.card_bytes(self.t, v),
                "application/json",
            )
            self.client.update_run(run_id, status="FINISHED", end_time=end)
        found = self.client.search_model_versions(mapping.version_filter(self.t.registered_model, run_id))
        if found:
            registered = min(found, key=lambda m: int(m.get("version") or 0))
        else:
            registered = self.client.create_model_version(
                self.t.registered_model,
                source=mapping.version_source(v.data.get("modelUri"), run_id),
                run_id=run_id,
                tags=mapping.model_version_tags(self.t, v),
                description=mapping.version_description(self.t, v),
            )
        LOG.info(
            "MLflow: %s/%s v%s is run %s, %s version %s",
            self.t.namespace,
            self.t.model,
            v.version,
            run_id,
            self.t.registered_model,
            registered.get("version"),
        )
        return api.MLflowVersion(
            version=v.version, run_id=run_id, model_version=str(registered.get("version") or "") or None
        )

    def lookup(self, experiment_id: str, version: int) -> api.MLflowVersion | None:
        """An exported version that status.mlflow does not list (older than those it keeps, or
        exported before a state reset), found by its run's tags."""
        run = self._run(experiment_id, mapping.Version(version=version, deleted=False, data={}))
        if run is None:
            return None
        run_id = str((run.get("info") or {}).get("run_id"))
        found = self.client.search_model_versions(mapping.version_filter(self.t.registered_model, run_id))
        if not found:
            return None
        number = min(int(m.get("version") or 0) for m in found)
        return api.MLflowVersion(version=version, run_id=run_id, model_version=str(number))

    def mirror(self, wanted: dict[str, str]) -> None:
        """Make the registered model's aliases exactly ``wanted``: an alias whose version is not
        in MLflow (yet) is removed rather than left naming the wrong one."""
        registered = self.client.get_registered_model(self.t.registered_model) or {}
        current = {
            str(a.get("alias")): str(a.get("version"))
            for a in registered.get("aliases") or []
            if a.get("alias")
        }
        for alias, version in sorted(wanted.items()):
            if current.get(alias) != version:
                self.client.set_alias(self.t.registered_model, alias, version)
        for alias in sorted(set(current) - set(wanted)):
            self.client.delete_alias(self.t.registered_model, alias)
