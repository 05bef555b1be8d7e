"""TrainingJob: fit one model on one prepared Dataset, evaluate it, keep the model and its metrics.

The spec names the data (``datasetRef``), the model (an allowlisted ``estimator`` and its
``params``, checked against the estimator's real parameters before any pod starts), what to
measure (``metrics``, ``objective``, optional ``crossValidation``), where it runs
(``resources`` with GPUs, ``nodeSelector``, ``tolerations``, ``affinity``,
``priorityClassName``, an ``image``/``command`` for users' own code) and how
(``runPolicy``: retries, deadline, TTL, suspend). The status is small and final-state
oriented: phase, conditions, times, attempts, per-metric validation/test values, the
objective value, the model URI and the dataset digest it was trained on.

``TrainConfig`` is the workload's config (``python -m mlops_workloads.train``, or a user's
image): the operator writes it as JSON into a ConfigMap mounted at ``MLOPS_CONFIG_FILE``; the
workload answers with one JSON object (at most 4 KiB) on ``/dev/termination-log`` holding
``ok``, ``metrics`` (``{"validation": {...}, "test": {...}, "cv": {...}}``),
``objectiveValue``, ``modelUri``, ``datasetDigest``, ``fitSeconds`` and ``modelSizeBytes``,
or ``ok: false`` with ``reason`` and ``error``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

import pydantic

from mlops_operator.api import common, estimators

MetricName = Literal["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "rmse", "mae", "r2"]
Direction = Literal["maximize", "minimize"]
Phase = Literal["Pending", "WaitingForData", "Queued", "Suspended", "Running", "Succeeded", "Failed"]
FINISHED_PHASES: tuple[str, ...] = ("Succeeded", "Failed")
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
IMMUTABLE_WHILE_RUNNING: tuple[str, ...] = ("datasetRef", "model", "resources", "image", "command")


def _cel_list(values: list[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


_REGRESSORS = _cel_list(estimators.names("regression"))
_CLASSIFIERS = _cel_list(estimators.names("classification"))
_REGRESSION_METRICS = _cel_list(list(estimators.REGRESSION_METRICS))
_CLASSIFICATION_METRICS = _cel_list(list(estimators.CLASSIFICATION_METRICS))
_GPU_ESTIMATORS = _cel_list([n for n, e in sorted(estimators.REGISTRY.items()) if e.gpu_capable])


class DatasetRef(common.ApiModel):
    """The Dataset to train on (same namespace). Training waits until it is Ready."""

    name: str = pydantic.Field(
        min_length=1, max_length=253, pattern=OBJECT_NAME_PATTERN, description="Name of the Dataset."
    )


class ModelSpec(common.ApiModel):
    """Which estimator, with which hyperparameters."""

    estimator: estimators.EstimatorName = pydantic.Field(
        description="An allowlisted estimator: scikit-learn classifiers and regressors, XGBoost "
        "(XGBClassifier, XGBRegressor; the GPU learner) or LightGBM (LGBMClassifier, LGBMRegressor). "
        "`python -m mlops_operator.api.estimators --list` prints each one's parameters."
    )
    params: dict[str, Any] = pydantic.Field(
        default_factory=dict,
        description="Constructor parameters of the estimator, e.g. {n_estimators: 200, max_depth: 8}. "
        "Checked against the estimator's real parameter names, types and ranges before any pod starts. "
        "random_state defaults to 0 so that runs are reproducible.",
        json_schema_extra={"maxProperties": 64},
    )


class Objective(common.ApiModel):
    """The one number that says how good the model is (what a sweep optimises)."""

    metric: MetricName = pydantic.Field(description="One of spec.metrics.")
    direction: Direction | None = pydantic.Field(
        default=None,
        description="maximize or minimize; defaults to minimize for log_loss, rmse and mae, else maximize.",
    )

    def effective_direction(self) -> Direction:
        return self.direction or estimators.default_direction(self.metric)


class CrossValidation(common.ApiModel):
    """k-fold cross-validation on the training split, reported next to the validation metrics."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.folds == 0 || self.folds >= 2",
                    "message": "crossValidation.folds must be 0 (off) or between 2 and 20",
                    "fieldPath": ".folds",
                }
            ]
        }
    )

    folds: int = pydantic.Field(default=0, ge=0, le=20, description="Number of folds: 0 (off) or 2..20.")

    @pydantic.field_validator("folds")
    @classmethod
    def _folds(cls, value: int) -> int:
        if value == 1:
            raise ValueError("crossValidation.folds must be 0 (off) or between 2 and 20")
        return value


class RunPolicy(common.ApiModel):
    """Retries, deadline, clean-up and suspension of the training run."""

    backoff_limit: int = pydantic.Field(
        default=1, ge=0, le=20, description="Pod retries before the run fails (batch/v1 Job backoffLimit)."
    )
    active_deadline_seconds: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=30 * 24 * 3600,
        description="Fail the run (DeadlineExceeded) when it has been active this long.",
    )
    ttl_seconds_after_finished: int | None = pydantic.Field(
        default=None,
        ge=0,
        le=365 * 24 * 3600,
        description="Delete the Job, its pods and config this long after the run finished. The TrainingJob, "
        "its status (metrics, model URI) and the model files are kept.",
    )
    suspend: bool = pydantic.Field(
        default=False,
        description="Suspend the run: no pod runs while true (a running pod is stopped); false resumes it.",
    )


class Output(common.ApiModel):
    """Where the model directory goes."""

    storage_uri: str | None = pydantic.Field(
        default=None,
        max_length=2048,
        pattern=common.STORAGE_URI_PATTERN,
        description="Model directory (pvc://<claim>/<path> or file:///<path>). Defaults to "
        "models/<namespace>/<name> on the Dataset's volume.",
    )


class TrainingJobSpec(common.ApiModel):
    """What to train, on which data, measured how, run where and how."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.objective) || !has(self.metrics) || "
                    "self.objective.metric in self.metrics",
                    "message": "objective.metric must be one of spec.metrics",
                    "fieldPath": ".objective.metric",
                },
                {
                    "rule": f"!(self.model.estimator in {_REGRESSORS}) || !has(self.metrics) || "
                    f"self.metrics.all(m, m in {_REGRESSION_METRICS})",
                    "message": "metrics: a regression estimator supports only rmse, mae and r2",
                    "fieldPath": ".metrics",
                },
                {
                    "rule": f"!(self.model.estimator in {_CLASSIFIERS}) || !has(self.metrics) || "
                    f"self.metrics.all(m, m in {_CLASSIFICATION_METRICS})",
                    "message": "metrics: a classifier supports only accuracy, precision, recall, f1, roc_auc "
                    "and log_loss",
                    "fieldPath": ".metrics",
                },
                {
                    "rule": f"!(self.model.estimator in {_REGRESSORS}) || !has(self.objective) || "
                    f"self.objective.metric in {_REGRESSION_METRICS}",
                    "message": "objective.metric: a regression estimator supports only rmse, mae and r2",
                    "fieldPath": ".objective.metric",
                },
                {
                    "rule": f"!(self.model.estimator in {_CLASSIFIERS}) || !has(self.objective) || "
                    f"self.objective.metric in {_CLASSIFICATION_METRICS}",
                    "message": "objective.metric: a classifier supports only accuracy, precision, recall, "
                    "f1, roc_auc and log_loss",
                    "fieldPath": ".objective.metric",
                },
                {
                    "rule": "!has(self.resources) || !has(self.resources.gpu) || self.resources.gpu == 0 || "
                    f"has(self.image) || self.model.estimator in {_GPU_ESTIMATORS}",
                    "message": f"resources.gpu: only {', '.join(n for n, e in sorted(estimators.REGISTRY.items()) if e.gpu_capable)} "  # noqa: E501
                    "use GPUs in the built-in trainer; set image for your own GPU code",
                    "fieldPath": ".resources.gpu",
                },
            ]
        }
    )

    dataset_ref: DatasetRef = pydantic.Field(
        description="The Dataset to train on; training waits until it is Ready."
    )
    model: ModelSpec = pydantic.Field(description="The estimator and its parameters.")
    metrics: list[MetricName] | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=9,
        description="Metrics computed on the validation and test splits (and per CV fold). Default: "
        "accuracy, f1 and roc_auc (when the estimator gives probabilities) for classifiers; rmse, mae "
        "and r2 for regressors. precision/recall/f1 are binary for two classes, macro-averaged "
        "otherwise; roc_auc is one-vs-rest for several classes.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    objective: Objective | None = pydantic.Field(
        default=None,
        description="The metric that sums the run up (status.objectiveValue, on the validation split). "
        "Default: the first of metrics.",
    )
    cross_validation: CrossValidation | None = pydantic.Field(
        default=None, description="Optional k-fold cross-validation on the training split."
    )
    resources: common.Resources = pydantic.Field(
        default_factory=common.Resources,
        description="cpu/memory requests and limits; gpu adds nvidia.com/gpu and the GPU node selector and "
        "toleration. XGBoost then trains with device=cuda.",
    )
    node_selector: dict[str, str] | None = pydantic.Field(
        default=None,
        description="Extra node labels the pod must match (merged with the GPU selector).",
        json_schema_extra={"maxProperties": 32},
    )
    tolerations: list[common.Toleration] | None = pydantic.Field(
        default=None, max_length=32, description="Extra tolerations (merged with the GPU toleration)."
    )
    affinity: dict[str, Any] | None = pydantic.Field(
        default=None, description="A corev1 Affinity (nodeAffinity, podAffinity, podAntiAffinity), as is."
    )
    priority_class_name: str | None = pydantic.Field(
        default=None, max_length=253, pattern=OBJECT_NAME_PATTERN, description="PriorityClass of the pod."
    )
    image: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=512,
        description="Your own training image instead of the built-in trainer. It gets the same contract: the "
        "config JSON in the file named by $MLOPS_CONFIG_FILE, the dataset and output directories mounted, "
        "and it must write one JSON object (<= 4 KiB: ok, metrics, objectiveValue, modelUri) to "
        "/dev/termination-log.",
    )
    command: list[Annotated[str, pydantic.Field(max_length=4096)]] | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Entrypoint override (default: python -m mlops_workloads.train).",
    )
    output: Output | None = pydantic.Field(default=None, description="Where the model directory is written.")
    run_policy: RunPolicy = pydantic.Field(
        default_factory=RunPolicy, description="Retries, deadline, TTL after finishing, suspension."
    )

    def effective_metrics(self) -> list[str]:
        """The metrics to compute: the spec's, or the defaults for the estimator's task."""
        if self.metrics:
            return list(dict.fromkeys(self.metrics))
        entry = estimators.get(self.model.estimator)
        if entry.task == "regression":
            return list(estimators.REGRESSION_METRICS)
        defaults = ["accuracy", "f1"]
        if entry.has_proba(self.model.params):
            defaults.append("roc_auc")
        return defaults

    def effective_objective(self) -> tuple[str, Direction]:
        if self.objective is not None:
            return self.objective.metric, self.objective.effective_direction()
        metric = self.effective_metrics()[0]
        return metric, estimators.default_direction(metric)


def validate_spec(spec: TrainingJobSpec) -> list[str]:
    """What the apiserver cannot check: parameters against the estimator, metrics it cannot give.

    Every message names the field. The operator refuses the job (Failed/InvalidSpec) before
    any pod starts when this is not empty; sweeps call it on every suggestion.
    """
    errors = [
        f"model.params.{e}" if not e.startswith("unknown") else e
        for e in estimators.validate_params(spec.model.estimator, spec.model.params)
    ]
    entry = estimators.REGISTRY.get(spec.model.estimator)
    if entry is None:
        return errors
    allowed = estimators.metrics_for(entry.task)
    for metric in spec.effective_metrics():
        if metric not in allowed:
            errors.append(f"metrics: {metric} does not apply to {entry.task} ({entry.name})")
        elif metric in estimators.PROBA_METRICS and not entry.has_proba(spec.model.params):
            needs = ", ".join(f"{k}: {str(v).lower()}" for k, v in entry.proba_params.items())
            hint = f"; set model.params {needs}" if needs else ""
            errors.append(
                f"metrics: {metric} needs predicted probabilities, which {entry.name} does not give{hint}"
            )
    objective, _ = spec.effective_objective()
    if objective not in spec.effective_metrics():
        errors.append(f"objective.metric: {objective} must be one of spec.metrics")
    if spec.resources.gpu and not entry.gpu_capable and spec.image is None:
        capable = ", ".join(n for n, e in sorted(estimators.REGISTRY.items()) if e.gpu_capable)
        errors.append(f"resources.gpu: {entry.name} cannot use a GPU in the built-in trainer; use {capable}")
    return errors


# ---------------------------------------------------------------------------------------------
# Status
# ---------------------------------------------------------------------------------------------


class MetricValues(common.ApiModel):
    """One metric on each evaluation set."""

    validation: float | None = pydantic.Field(default=None, description="On the validation split.")
    test: float | None = pydantic.Field(default=None, description="On the held-out test split.")
    cv_mean: float | None = pydantic.Field(default=None, description="Mean over the cross-validation folds.")
    cv_std: float | None = pydantic.Field(default=None, description="Standard deviation over the folds.")


class TrainingJobStatus(common.Displayed, common.StatusBase):
    """Where the run is and what it produced."""

    DISPLAY: ClassVar[dict[str, tuple[str, Callable[[float], str]]]] = {
        "objective_short": ("objective_value", common.significant),
        "duration": ("duration_seconds", common.human_duration),
    }

    phase: Phase | None = pydantic.Field(
        default=None,
        description="Pending, WaitingForData (the Dataset is not Ready), Queued (waiting for Kueue), "
        "Suspended, Running, Succeeded or Failed. A run moves forward only: Pending or "
        "WaitingForData, then Running, then Succeeded or Failed; it goes back only into Suspended or "
        "Queued (a pause) or to Pending when an edited spec starts a new run.",
    )
    reason: str | None = pydantic.Field(
        default=None,
        max_length=128,
        description="Why the run is where it is: e.g. Unschedulable, OOMKilled, DeadlineExceeded, "
        "BackoffLimitExceeded, ImagePullBackOff, InvalidSpec, DatasetNotReady.",
    )
    message: str | None = pydantic.Field(default=None, max_length=1024, description="Details for people.")
    job_name: str | None = pydantic.Field(
        default=None, max_length=63, description="The batch/v1 Job of the run."
    )
    start_time: str | None = pydantic.Field(default=None, description="When the Job started (RFC 3339).")
    pod_start_time: str | None = pydantic.Field(
        default=None,
        description="When the run's first pod started (RFC 3339); minus creation is the queueing time.",
    )
    completion_time: str | None = pydantic.Field(
        default=None, description="When the run finished (RFC 3339)."
    )
    duration_seconds: float | None = pydantic.Field(
        default=None, ge=0, description="Wall time from start to completion."
    )
    duration: str | None = pydantic.Field(
        default=None,
        max_length=16,
        description="durationSeconds as kubectl prints durations (5s, 3m12s, 2h5m), for printer columns.",
    )
    fit_seconds: float | None = pydantic.Field(
        default=None, ge=0, description="Time spent fitting the model."
    )
    attempts: int | None = pydantic.Field(default=None, ge=0, description="Pods started for the run so far.")
    metrics: dict[MetricName, MetricValues] | None = pydantic.Field(
        default=None,
        description="Each computed metric on validation, test and CV.",
        json_schema_extra={"maxProperties": 9},
    )
    objective_metric: str | None = pydantic.Field(
        default=None, max_length=32, description="The objective's metric."
    )
    objective_value: float | None = pydantic.Field(
        default=None, description="The objective metric on the validation split (CV mean when there is none)."
    )
    objective_short: str | None = pydantic.Field(
        default=None, max_length=32, description="objectiveValue to 4 significant digits (printer columns)."
    )
    model_uri: str | None = pydantic.Field(default=None, max_length=2048, description="The model directory.")
    model_size_bytes: int | None = pydantic.Field(default=None, ge=0, description="Size of model.skops.")
    dataset_digest: str | None = pydantic.Field(
        default=None, max_length=128, description="Digest of the Dataset version the run uses."
    )
    dataset_uri: str | None = pydantic.Field(
        default=None, max_length=2048, description="The Dataset version's directory the run reads."
    )
    spec_hash: str | None = pydantic.Field(
        default=None,
        max_length=32,
        description="Hash of the spec the current run started for; editing a finished job starts a new run.",
    )
    children_deleted: bool | None = pydantic.Field(
        default=None, description="True once ttlSecondsAfterFinished removed the Job and its config."
    )


class TrainingJob(common.Resource):
    """TrainingJob trains and evaluates one model on a prepared Dataset, on CPU or GPU pods."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(oldSelf.status) || !has(oldSelf.status.phase) || "
                    f"oldSelf.status.phase != 'Running' || "
                    f"(has(self.spec.{f}) == has(oldSelf.spec.{f}) && "
                    f"(!has(self.spec.{f}) || self.spec.{f} == oldSelf.spec.{f}))",
                    "message": f"spec.{f} cannot change while the TrainingJob is Running "
                    "(suspend it or wait until it finished)",
                    "fieldPath": f".spec.{f}",
                    "reason": "FieldValueForbidden",
                }
                for f in IMMUTABLE_WHILE_RUNNING
            ]
        }
    )

    crd: ClassVar[common.CRDMeta] = common.CRDMeta(
        kind="TrainingJob",
        plural="trainingjobs",
        singular="trainingjob",
        short_names=("tj",),
        printer_columns=(
            common.PrinterColumn(name="Phase", json_path=".status.phase"),
            common.PrinterColumn(name="Estimator", json_path=".spec.model.estimator"),
            common.PrinterColumn(
                name="Objective",
                json_path=".status.objectiveShort",
                description="The objective metric on the validation split (4 significant digits).",
            ),
            common.PrinterColumn(
                name="Duration",
                json_path=".status.duration",
                description="From start to completion (5s, 3m12s).",
            ),
            common.PrinterColumn(name="Reason", json_path=".status.reason", priority=1),
            common.PrinterColumn(name="Model", json_path=".status.modelUri", priority=1),
        ),
        description="TrainingJob trains and evaluates one model on a prepared Dataset, on CPU or GPU pods.",
    )

    spec: TrainingJobSpec
    status: TrainingJobStatus = TrainingJobStatus()


# ---------------------------------------------------------------------------------------------
# Workload config
# ---------------------------------------------------------------------------------------------


class TrainConfig(common.ApiModel):
    """The config the operator hands the training container (the contract for users' images too)."""

    name: str = pydantic.Field(description="The TrainingJob's name.")
    namespace: str = pydantic.Field(default="default", description="The TrainingJob's namespace.")
    estimator: str = pydantic.Field(description="Registry name, e.g. RandomForestClassifier.")
    import_path: str = pydantic.Field(
        description="Python import path, e.g. sklearn.ensemble.RandomForestClassifier."
    )
    task: Literal["classification", "regression"] = pydantic.Field(description="The estimator's task.")
    params: dict[str, Any] = pydantic.Field(
        default_factory=dict, description="Validated constructor parameters."
    )
    metrics: list[str] = pydantic.Field(description="Metrics to compute.")
    objective_metric: str = pydantic.Field(description="The objective metric.")
    objective_direction: Direction = pydantic.Field(description="maximize or minimize.")
    cv_folds: int = pydantic.Field(default=0, ge=0, le=20, description="Cross-validation folds (0: none).")
    gpu: int = pydantic.Field(default=0, ge=0, description="GPUs given to the pod; XGBoost uses device=cuda.")
    gpu_params: dict[str, Any] = pydantic.Field(
        default_factory=dict, description="Parameters that select the GPU learner (set by the operator)."
    )
    dataset_name: str = pydantic.Field(default="", description="The Dataset's name.")
    dataset_uri: str = pydantic.Field(description="The prepared Dataset version directory (storage URI).")
    dataset_digest: str = pydantic.Field(default="", description="Its digest.")
    output_uri: str = pydantic.Field(description="The model directory to write (storage URI).")
    pvc_root: str = pydantic.Field(default="/mnt/mlops", description="Where pvc:// claims are mounted.")
    seed: int = pydantic.Field(default=0, ge=0, description="Seed for random_state and CV folds.")
