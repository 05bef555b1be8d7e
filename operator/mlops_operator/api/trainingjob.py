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
image): the operator puts it as JSON in the pod's ``mlops.dev/config`` annotation, mounted
through a downwardAPI volume as the file named by ``MLOPS_CONFIG_FILE``; the
workload answers with one JSON object (at most 4 KiB) on ``/dev/termination-log`` holding
``ok``, ``metrics`` (``{"validation": {...}, "test": {...}, "cv": {...}}``),
``objectiveValue``, ``modelUri``, ``modelVersion``, ``datasetDigest``, ``fitSeconds``,
``modelSizeBytes`` and ``resourcesUsed`` (what the run measured it used: the status keeps it and
a suggested request, ``api.rightsizing``), or ``ok: false`` with ``reason`` and ``error``. The
model is written to a local staging directory (``output_dir``) and published as the immutable version
``<output_uri>/<modelVersion>`` (``mlops_workloads.train.staging``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

import pydantic

from mlops_operator.api import common, estimators, workload

MetricName = Literal["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "rmse", "mae", "r2"]
Direction = Literal["maximize", "minimize"]
Phase = Literal["Pending", "WaitingForData", "Queued", "Suspended", "Running", "Succeeded", "Failed"]
FINISHED_PHASES: tuple[str, ...] = ("Succeeded", "Failed")
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
DATASET_VERSION_PATTERN = r"^[0-9a-f]{12,64}$"
IMMUTABLE_WHILE_RUNNING: tuple[str, ...] = (
    "datasetRef",
    "model",
    "trainer",
    "workers",
    "resources",
    "image",
    "command",
)
WORKERS_MAX = 64
PARAM_ENV_PREFIX = "MLOPS_PARAM_"
"""Each of a trainer's params also reaches its code as ``MLOPS_PARAM_<NAME>`` (upper case)."""
CODE_DIR = "/opt/mlops/code"
"""Where ``trainer.codeConfigMap`` is mounted (read-only) in a trainer's pods."""
METRIC_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$"


def _cel_list(values: list[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


_REGRESSORS = _cel_list(estimators.names("regression"))
_CLASSIFIERS = _cel_list(estimators.names("classification"))
_REGRESSION_METRICS = _cel_list(list(estimators.REGRESSION_METRICS))
_CLASSIFICATION_METRICS = _cel_list(list(estimators.CLASSIFICATION_METRICS))
_GPU_ESTIMATORS = _cel_list([n for n, e in sorted(estimators.REGISTRY.items()) if e.gpu_capable])
_DISTRIBUTED_ESTIMATORS = _cel_list(estimators.distributed_names())
_BUILTIN_METRICS = _cel_list(list(estimators.CLASSIFICATION_METRICS + estimators.REGRESSION_METRICS))


class DatasetRef(common.ApiModel):
    """The Dataset to train on (same namespace). Training waits until it is Ready."""

    name: str = pydantic.Field(
        min_length=1, max_length=253, pattern=OBJECT_NAME_PATTERN, description="Name of the Dataset."
    )
    version: str | None = pydantic.Field(
        default=None,
        min_length=12,
        max_length=64,
        pattern=DATASET_VERSION_PATTERN,
        description="A version the Dataset keeps (status.versions): its digest or a unique prefix of at "
        "least 12 hex characters (digestShort). Default: the Dataset's current version when the run "
        "starts. Either way the run keeps the version it started on (status.datasetDigest).",
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


class Trainer(common.ApiModel):
    """Your own training code: an image and a command that follow the trainer contract.

    The code reads the same JSON config as the built-in trainer (the file named by
    ``$MLOPS_CONFIG_FILE``: ``params``, the prepared splits' paths under ``data``, ``outputDir``;
    its rank and the world size come as ``$RANK``/``$WORLD_SIZE``, as torchrun sets them) and
    reports with ``mlops_workloads.report`` (or by writing the documented result JSON to
    /dev/termination-log itself). ``workloads/mlops_workloads/README.md`` is the contract.
    """

    image: str = pydantic.Field(
        min_length=1,
        max_length=512,
        description="The image that runs your code, e.g. registry/team/train:1.4.",
    )
    command: list[Annotated[str, pydantic.Field(max_length=4096)]] = pydantic.Field(
        min_length=1,
        max_length=64,
        description="The command, e.g. [python, /opt/mlops/code/train.py] or [torchrun, ...].",
    )
    params: dict[str, Any] = pydantic.Field(
        default_factory=dict,
        description="Your code's hyperparameters, free-form (not checked by the operator): they reach the "
        "code as config.params and as MLOPS_PARAM_<NAME> variables, and a sweep tunes them.",
        json_schema_extra={"maxProperties": 64, "x-kubernetes-preserve-unknown-fields": True},
    )
    code_config_map: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=OBJECT_NAME_PATTERN,
        description="A ConfigMap whose keys are files (your script) mounted read-only at /opt/mlops/code.",
    )
    task: Literal["classification", "regression"] | None = pydantic.Field(
        default=None, description="What the code learns; defaults to the Dataset's task."
    )


class Objective(common.ApiModel):
    """The one number that says how good the model is (what a sweep optimises)."""

    metric: str = pydantic.Field(
        max_length=63,
        pattern=METRIC_NAME_PATTERN,
        description="One of spec.metrics for an estimator; any metric your trainer reports (on its "
        "validation split) for a trainer.",
    )
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
    scheduling_timeout_seconds: int = pydantic.Field(
        default=60,
        ge=5,
        le=7 * 24 * 3600,
        description="A run of several workers fails (reason Unschedulable) when one of its workers "
        "has been unschedulable this long: the workers that did start would wait in the rendezvous "
        "for good (Kubeflow's schedulingPolicy.scheduleTimeoutSeconds). A queue that admits the "
        "workers together (Kueue) makes them wait before any pod exists instead.",
    )


class Output(common.ApiModel):
    """Where the model directory goes."""

    storage_uri: str | None = pydantic.Field(
        default=None,
        max_length=2048,
        pattern=common.STORAGE_URI_PATTERN,
        description="Model directory (pvc://<claim>/<path>, file:///<path> or s3://<bucket>/<prefix>). "
        "Defaults to models/<namespace>/<name> on the Dataset's volume or bucket.",
    )
    s3: common.S3Connection | None = pydantic.Field(
        default=None,
        description="How the pods reach an s3:// storageUri; defaults to the Dataset's spec.s3.",
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
                    "rule": "!has(self.model) || "
                    f"!(self.model.estimator in {_REGRESSORS}) || !has(self.metrics) || "
                    f"self.metrics.all(m, m in {_REGRESSION_METRICS})",
                    "message": "metrics: a regression estimator supports only rmse, mae and r2",
                    "fieldPath": ".metrics",
                },
                {
                    "rule": "!has(self.model) || "
                    f"!(self.model.estimator in {_CLASSIFIERS}) || !has(self.metrics) || "
                    f"self.metrics.all(m, m in {_CLASSIFICATION_METRICS})",
                    "message": "metrics: a classifier supports only accuracy, precision, recall, f1, roc_auc "
                    "and log_loss",
                    "fieldPath": ".metrics",
                },
                {
                    "rule": "!has(self.model) || "
                    f"!(self.model.estimator in {_REGRESSORS}) || !has(self.objective) || "
                    f"self.objective.metric in {_REGRESSION_METRICS}",
                    "message": "objective.metric: a regression estimator supports only rmse, mae and r2",
                    "fieldPath": ".objective.metric",
                },
                {
                    "rule": "!has(self.model) || "
                    f"!(self.model.estimator in {_CLASSIFIERS}) || !has(self.objective) || "
                    f"self.objective.metric in {_CLASSIFICATION_METRICS}",
                    "message": "objective.metric: a classifier supports only accuracy, precision, recall, "
                    "f1, roc_auc and log_loss",
                    "fieldPath": ".objective.metric",
                },
                {
                    "rule": "has(self.model) != has(self.trainer)",
                    "message": "set exactly one of model (a built-in estimator) and trainer (your own code)",
                    "fieldPath": ".model",
                },
                {
                    "rule": "!has(self.model) || !has(self.objective) || "
                    f"self.objective.metric in {_BUILTIN_METRICS}",
                    "message": "objective.metric must be one of accuracy, precision, recall, f1, roc_auc, "
                    "log_loss, rmse, mae, r2 for a built-in estimator",
                    "fieldPath": ".objective.metric",
                },
                {
                    "rule": "!has(self.trainer) || (!has(self.image) && !has(self.command))",
                    "message": "image and command belong inside trainer when trainer is set",
                    "fieldPath": ".image",
                },
                {
                    "rule": "!has(self.workers) || self.workers == 1 || has(self.trainer) || "
                    f"self.model.estimator in {_DISTRIBUTED_ESTIMATORS}",
                    "message": f"workers: only {', '.join(estimators.distributed_names())} and trainer (your "
                    "own code) train on several workers",
                    "fieldPath": ".workers",
                },
                {
                    "rule": "!has(self.resources) || !has(self.resources.gpu) || self.resources.gpu == 0 || "
                    f"has(self.image) || has(self.trainer) || self.model.estimator in {_GPU_ESTIMATORS}",
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
    model: ModelSpec | None = pydantic.Field(
        default=None, description="A built-in estimator and its parameters (or set trainer)."
    )
    trainer: Trainer | None = pydantic.Field(
        default=None, description="Your own code instead of a built-in estimator (or set model)."
    )
    workers: int = pydantic.Field(
        default=1,
        ge=1,
        le=WORKERS_MAX,
        description="Pods of one run (torch.distributed: an Indexed Job and a headless Service, with "
        "MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK set as torchrun expects). All start or the run "
        "fails (Unschedulable); resources are per worker.",
    )
    allow_cpu_fallback: bool = pydantic.Field(
        default=False,
        alias="allowCPUFallback",
        description="With resources.gpu, accept a run that ended up on the CPU; by default it fails "
        "with GPUUnavailable.",
    )
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
    register_as: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=OBJECT_NAME_PATTERN,
        description="A Model (same namespace) to record the trained model in as a new version once the "
        "run succeeded. The version outlives this TrainingJob; changing this field never retrains.",
    )
    run_policy: RunPolicy = pydantic.Field(
        default_factory=RunPolicy, description="Retries, deadline, TTL after finishing, suspension."
    )

    def effective_metrics(self) -> list[str]:
        """The metrics to compute: the spec's, or the defaults for the estimator's task (a
        trainer computes what it likes: the objective is the one the operator needs)."""
        if self.metrics:
            return list(dict.fromkeys(self.metrics))
        if self.model is None:
            return [self.objective.metric] if self.objective else []
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


def param_env_name(name: str) -> str:
    """``MLOPS_PARAM_<NAME>``: every character but ASCII letters and digits as ``_``, upper case
    (``mlops_workloads.trainer.param_env_name`` is the same rule on the workload's side)."""
    return PARAM_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def validate_spec(spec: TrainingJobSpec) -> list[str]:
    """What the apiserver cannot check: parameters against the estimator, metrics it cannot give.

    Every message names the field. The operator refuses the job (Failed/InvalidSpec) before
    any pod starts when this is not empty; sweeps call it on every suggestion.
    """
    if spec.model is None:
        errors = [] if spec.objective else ["objective: required with trainer (the metric your code reports)"]
        seen: dict[str, str] = {}
        for name in sorted(spec.trainer.params if spec.trainer else {}):
            env = param_env_name(name)
            if env in seen:
                errors.append(f"trainer.params: {seen[env]!r} and {name!r} would both be ${env}")
            seen[env] = name
        return errors
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
    if spec.workers > 1 and not entry.distributed:
        errors.append(
            f"workers: {entry.name} trains on one pod; use "
            f"{', '.join(estimators.distributed_names())} or trainer"
        )
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


class ResourcesUsed(common.ApiModel):
    """What a finished run measured it used (``mlops_workloads.usage``; rank 0's pod when several
    workers trained): the figures the suggestion is made from."""

    cpu_seconds: float | None = pydantic.Field(
        default=None, ge=0, description="CPU time the container (else the trainer process) used."
    )
    cpu_cores: float | None = pydantic.Field(
        default=None, ge=0, description="cpuSeconds over the wall time since the trainer started: cores busy."
    )
    peak_memory_bytes: int | None = pydantic.Field(
        default=None,
        ge=0,
        description="The container's peak memory (cgroup, page cache included), else "
        "the largest resident set of the process and its children.",
    )
    source: str | None = pydantic.Field(
        default=None,
        max_length=32,
        description="Where the figures come from: cgroup2 (memory.peak, cpu.stat), cgroup1 "
        "(memory.max_usage_in_bytes, cpuacct.usage) or rusage (getrusage, outside a container).",
    )
    gpu_peak_memory_bytes: int | None = pydantic.Field(
        default=None, ge=0, description="Peak GPU memory torch allocated, summed over devices (torch runs)."
    )
    gpu_utilization_mean: float | None = pydantic.Field(
        default=None,
        ge=0,
        le=100,
        description="Mean GPU utilisation in percent (NVML, sampled every second).",
    )
    gpu_utilization_max: float | None = pydantic.Field(
        default=None, ge=0, le=100, description="Its largest sample."
    )

    @classmethod
    def from_result(cls, raw: Any) -> ResourcesUsed | None:
        """A result's ``resourcesUsed``, keeping the figures that are valid (None: none is)."""
        if not isinstance(raw, dict):
            return None
        kept: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            key = field.alias or name
            if key not in raw or raw[key] is None or isinstance(raw[key], bool):
                continue
            try:
                cls.model_validate({key: raw[key]})
            except pydantic.ValidationError:
                continue
            kept[key] = raw[key]
        return cls.model_validate(kept) if kept else None


class SuggestedResources(common.ApiModel):
    """A request to give the next run like this one (``mlops_operator.api.rightsizing.suggest``)."""

    cpu: str | None = pydantic.Field(
        default=None,
        pattern=common.QUANTITY_PATTERN,
        description="The cores used x 1.2, rounded up to 100m (at least 100m).",
    )
    memory: str | None = pydantic.Field(
        default=None,
        pattern=common.QUANTITY_PATTERN,
        description="The peak memory x 1.25, rounded up to 16Mi (at least 64Mi).",
    )
    gpu: int | None = pydantic.Field(
        default=None, ge=0, le=16, description="The GPUs requested; 0 when they were measured idle."
    )


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
        "BackoffLimitExceeded, ImagePullBackOff, InvalidSpec, DatasetNotReady, DatasetVersionNotFound.",
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
    metrics: dict[str, MetricValues] | None = pydantic.Field(
        default=None,
        description="Each computed metric on validation, test and CV.",
        json_schema_extra={"maxProperties": 16},
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
    model_uri: str | None = pydantic.Field(
        default=None,
        max_length=2048,
        description="The model version's directory (<output>/<modelVersion>): written once, never over.",
    )
    model_version: str | None = pydantic.Field(
        default=None,
        max_length=64,
        description="The model version the run published: the first 16 hex characters of a SHA-256 over "
        "the model's files (the same model bytes, the same version).",
    )
    model_s3: common.S3Connection | None = pydantic.Field(
        default=None,
        description="How pods reach an s3:// modelUri (endpoint, region, Secret name; never a credential): "
        "what ModelDeployments serving this run use.",
    )
    model_size_bytes: int | None = pydantic.Field(
        default=None,
        ge=0,
        description="Size of the model files (model.skops, or model.onnx with its preprocessor).",
    )
    dataset_digest: str | None = pydantic.Field(
        default=None, max_length=128, description="Digest of the Dataset version the run uses."
    )
    dataset_digest_short: str | None = pydantic.Field(
        default=None, max_length=16, description="Its first 12 hex characters (printer columns)."
    )
    device: str | None = pydantic.Field(
        default=None,
        max_length=128,
        description="The device the trainer measured it ran on (cpu, cuda:0 (NVIDIA H200)...), never the "
        "one requested.",
    )
    world_size: int | None = pydantic.Field(
        default=None, ge=1, description="Workers that trained the model together (torch.distributed)."
    )
    epochs: int | None = pydantic.Field(
        default=None, ge=0, description="Epochs trained (neural networks and trainers that report them)."
    )
    image_id: str | None = pydantic.Field(
        default=None,
        max_length=512,
        description="The image digest the (first) training pod ran, as the kubelet reported it.",
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
    resources_used: ResourcesUsed | None = pydantic.Field(
        default=None,
        description="What the finished run measured it used (with several workers: rank 0's, the "
        "worker that reports).",
    )
    suggested_resources: SuggestedResources | None = pydantic.Field(
        default=None,
        description="What to request next time, from resourcesUsed (mlops status shows requested, used "
        "and suggested side by side).",
    )


_RESOURCE_RULES: list[Any] = [
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
] + [
    {
        # Here, not on the spec: a sweep's trialTemplate takes the sweep's objective.
        "rule": "!has(self.spec.trainer) || has(self.spec.objective)",
        "message": "spec.objective is required with spec.trainer: name the metric your code reports",
        "fieldPath": ".spec.objective",
    }
]


class TrainingJob(common.Resource):
    """TrainingJob trains and evaluates one model on a prepared Dataset, on CPU or GPU pods."""

    model_config = pydantic.ConfigDict(json_schema_extra={"x-kubernetes-validations": _RESOURCE_RULES})

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
            common.PrinterColumn(
                name="Data",
                json_path=".status.datasetDigestShort",
                description="The Dataset version (digest) the run trains on.",
            ),
            common.PrinterColumn(name="Reason", json_path=".status.reason", priority=1),
            common.PrinterColumn(name="Model", json_path=".status.modelUri", priority=1),
            common.PrinterColumn(name="Trainer", json_path=".spec.trainer.image", priority=1),
            common.PrinterColumn(name="Workers", json_path=".spec.workers", type="integer", priority=1),
            common.PrinterColumn(name="Device", json_path=".status.device", priority=1),
        ),
        description="TrainingJob trains and evaluates one model on a prepared Dataset, on CPU or GPU pods.",
    )

    spec: TrainingJobSpec
    status: TrainingJobStatus = TrainingJobStatus()


# ---------------------------------------------------------------------------------------------
# Workload config
# ---------------------------------------------------------------------------------------------


class DataPaths(common.ApiModel):
    """Where a prepared Dataset version's files are inside the training pod."""

    dir: str = pydantic.Field(description="The version's directory.")
    train: str = pydantic.Field(description="train.parquet: features and the target column.")
    validation: str = pydantic.Field(description="validation.parquet.")
    test: str = pydantic.Field(description="test.parquet.")
    preprocessor: str = pydantic.Field(
        description="preprocessor.skops: the feature transform fitted on train (load with skops, "
        "trusting only the listed types)."
    )
    schema_file: str = pydantic.Field(alias="schema", description="schema.json: columns, types, target.")
    target: str | None = pydantic.Field(default=None, description="The target column.")


class TrainConfig(common.ApiModel):
    """The config the operator hands the training container (the contract for users' images too)."""

    name: str = pydantic.Field(description="The TrainingJob's name.")
    namespace: str = pydantic.Field(default="default", description="The TrainingJob's namespace.")
    trainer: Literal["builtin", "custom"] = pydantic.Field(
        default="builtin",
        description="builtin: an allowlisted estimator; custom: your own code (spec.trainer).",
    )
    estimator: str = pydantic.Field(
        default="", description="Registry name, e.g. RandomForestClassifier (builtin only)."
    )
    import_path: str = pydantic.Field(
        default="", description="Python import path, e.g. sklearn.ensemble.RandomForestClassifier."
    )
    image: str = pydantic.Field(
        default="", description="The image the pods run (recorded in the model card)."
    )
    command: list[str] = pydantic.Field(default_factory=list, description="Their command (recorded too).")
    task: Literal["classification", "regression"] = pydantic.Field(description="The estimator's task.")
    params: dict[str, Any] = pydantic.Field(
        default_factory=dict,
        description="Validated constructor parameters (builtin); your params as given (custom).",
    )
    metrics: list[str] = pydantic.Field(description="Metrics to compute.")
    objective_metric: str = pydantic.Field(description="The objective metric.")
    objective_direction: Direction = pydantic.Field(description="maximize or minimize.")
    cv_folds: int = pydantic.Field(default=0, ge=0, le=20, description="Cross-validation folds (0: none).")
    gpu: int = pydantic.Field(
        default=0, ge=0, description="GPUs given to each pod; XGBoost uses device=cuda."
    )
    allow_cpu_fallback: bool = pydantic.Field(
        default=False,
        alias="allowCPUFallback",
        description="With gpu > 0: accept training on the CPU when no GPU works (else GPUUnavailable).",
    )
    workers: int = pydantic.Field(
        default=1, ge=1, description="World size; each pod's rank is $RANK (torch.distributed env vars)."
    )
    gpu_params: dict[str, Any] = pydantic.Field(
        default_factory=dict, description="Parameters that select the GPU learner (set by the operator)."
    )
    dataset_name: str = pydantic.Field(default="", description="The Dataset's name.")
    dataset_uri: str = pydantic.Field(description="The prepared Dataset version directory (storage URI).")
    dataset_digest: str = pydantic.Field(default="", description="Its digest.")
    output_uri: str = pydantic.Field(
        description="Where model versions are published (storage URI): each run's model goes to "
        "<output_uri>/<version>/, never over an older one."
    )
    output_dir: str = pydantic.Field(
        default="",
        description="The local staging directory in the pod where a trainer writes its model; the "
        "workload publishes it as a version of output_uri when the run reports.",
    )
    code_version: str = pydantic.Field(
        default="",
        max_length=256,
        description="The code's version: the TrainingJob's mlops.dev/code-version annotation (the model "
        "card names the image when it is empty).",
    )
    resources: common.Resources | None = pydantic.Field(
        default=None, description="The pods' spec.resources as given (recorded in the model card)."
    )
    data: DataPaths | None = pydantic.Field(
        default=None, description="Local paths of the prepared Dataset version's files in the pod."
    )
    pvc_root: str = pydantic.Field(default="/mnt/mlops", description="Where pvc:// claims are mounted.")
    dataset_s3: common.S3Connection | None = pydantic.Field(
        default=None, description="How to reach an s3:// dataset_uri (the Dataset's spec.s3)."
    )
    output_s3: common.S3Connection | None = pydantic.Field(
        default=None, description="How to reach an s3:// output_uri."
    )
    secrets_root: str = pydantic.Field(
        default=workload.SECRETS_DIR, description="Where Secrets are mounted: <root>/s3/<secret>/<key>."
    )
    seed: int = pydantic.Field(default=0, ge=0, description="Seed for random_state and CV folds.")
