"""ModelDeployment: serve a trained model, scale it, roll out new versions, watch for drift.

The spec says WHICH model (a TrainingJob's, a sweep's best trial, or a storage URI), HOW
MANY pods (fixed ``replicas`` or ``autoscaling``), how a new version rolls out (``canary``
with automatic rollback), which ``stage`` it is in (a registry's staging, production,
archived), what to do on ``drift`` and which predictions to capture (``logging``: low-confidence
rows and a sample, for review and retraining). The status keeps what a person and the operator
need after a restart: phase, URL, replicas, the served model's URI and digest, the canary's
state, the last scale decision and the autoscaler's small state (so a restart of the
operator neither forgets a panic nor scales down early).

``ServeConfig`` is the model server's config (``python -m mlops_workloads.serve``) and
``ReviewConfig`` the review server's (``python -m mlops_workloads.review``); they live here so
the operator and the workloads share one definition.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import pydantic

from mlops_operator.api import common, workload
from mlops_operator.api import retrain as retrain_api

OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
EXACTLY_ONE_MODEL = (
    "(has(self.modelRef) ? 1 : 0) + (has(self.trainingJobRef) ? 1 : 0) + (has(self.sweepRef) ? 1 : 0)"
    " + (has(self.storageUri) ? 1 : 0) == 1"
)
ALIAS_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class ModelRef(common.ApiModel):
    """A version of a registered Model: the one an alias names (it follows the alias), or a fixed one."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.alias) && has(self.version))",
                    "message": "modelRef: set alias or version, not both",
                }
            ]
        }
    )

    name: str = pydantic.Field(
        min_length=1, max_length=253, pattern=OBJECT_NAME_PATTERN, description="The Model (same namespace)."
    )
    alias: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=ALIAS_PATTERN,
        description="An alias of the Model, e.g. champion: when it moves, the deployment rolls out the "
        "version it names (through spec.canary when set). Default: champion, unless version is set.",
    )
    version: int | None = pydantic.Field(default=None, ge=1, description="A fixed version number instead.")

    @pydantic.model_validator(mode="after")
    def _alias_or_version(self) -> ModelRef:
        if self.alias is not None and self.version is not None:
            raise ValueError("modelRef: set alias or version, not both")
        return self

    def effective_alias(self) -> str | None:
        return None if self.version is not None else (self.alias or "champion")


class ModelSource(common.ApiModel):
    """Where the model comes from: exactly one of modelRef, trainingJobRef, sweepRef, storageUri."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": EXACTLY_ONE_MODEL,
                    "message": "model: set exactly one of modelRef, trainingJobRef, sweepRef or storageUri",
                }
            ]
        }
    )

    model_ref: ModelRef | None = pydantic.Field(
        default=None,
        description="A version of a registered Model, by alias (it follows the alias) or number.",
    )
    training_job_ref: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=OBJECT_NAME_PATTERN,
        description="Name of a TrainingJob in the same namespace; its status.modelUri is served once it "
        "succeeded.",
    )
    sweep_ref: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=OBJECT_NAME_PATTERN,
        description="Name of a HyperparameterSweep in the same namespace; its best trial's model is served.",
    )
    storage_uri: str | None = pydantic.Field(
        default=None,
        max_length=2048,
        pattern=common.STORAGE_URI_PATTERN,
        description="A model directory (pvc://<claim>/<path>, file:///<path> or s3://<bucket>/<prefix>) "
        "holding model.skops (or model.onnx), schema.json, baseline.json and model_card.json.",
    )
    s3: common.S3Connection | None = pydantic.Field(
        default=None,
        description="How the serving pods reach an s3:// model (downloaded at start); defaults to the "
        "TrainingJob's (its output's or its Dataset's).",
    )

    @pydantic.model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        chosen = [
            v
            for v in (self.model_ref, self.training_job_ref, self.sweep_ref, self.storage_uri)
            if v is not None
        ]
        if len(chosen) != 1:
            raise ValueError("model: set exactly one of modelRef, trainingJobRef, sweepRef or storageUri")
        return self


class Autoscaling(common.ApiModel):
    """Replica bounds and the scaling policy (Knative KPA semantics by default)."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.minReplicas <= self.maxReplicas",
                    "message": "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
                    "fieldPath": ".minReplicas",
                },
                {
                    "rule": "self.panicWindowSeconds < self.stableWindowSeconds",
                    "message": "autoscaling.panicWindowSeconds must be shorter than stableWindowSeconds",
                    "fieldPath": ".panicWindowSeconds",
                },
                {
                    "rule": "self.minReplicas > 0 || self.autoscaler == 'kpa'",
                    "message": "autoscaling.minReplicas 0 (scale to zero) needs autoscaler kpa: an HPA "
                    "never scales to zero",
                    "fieldPath": ".minReplicas",
                },
            ]
        }
    )

    min_replicas: int = pydantic.Field(
        default=1,
        ge=0,
        le=1000,
        description="Fewest pods. 0 scales to zero after scaleToZeroAfterSeconds without a request: "
        "the Service then points at a small activator that holds requests while the pods start "
        "(kpa only; no Knative needed).",
    )
    max_replicas: int = pydantic.Field(default=10, ge=1, le=1000, description="Most pods.")
    metric: Literal["concurrency", "rps"] = pydantic.Field(
        default="concurrency",
        description="What `target` counts per pod: in-flight requests or requests per second.",
    )
    target: float = pydantic.Field(default=10.0, gt=0, le=100000, description="Desired metric value per pod.")
    target_utilization_percent: int = pydantic.Field(
        default=70,
        ge=1,
        le=100,
        description="Scale so pods run at this share of `target` (headroom for bursts).",
    )
    autoscaler: Literal["kpa", "hpa"] = pydantic.Field(
        default="kpa",
        description="kpa: the operator reads the pods' /metrics and sets replicas (no metrics server "
        "needed); hpa: emit an autoscaling/v2 HorizontalPodAutoscaler on the pods metric (needs a "
        "custom-metrics adapter).",
    )
    stable_window_seconds: int = pydantic.Field(
        default=60, ge=6, le=3600, description="Window whose average load sets the replica count."
    )
    panic_window_seconds: int = pydantic.Field(
        default=6, ge=1, le=600, description="Short window that detects bursts."
    )
    panic_threshold_percent: int = pydantic.Field(
        default=200,
        ge=110,
        le=1000,
        description="Enter panic mode when the panic window needs this share of the ready pods (200 = 2x).",
    )
    scale_down_delay_seconds: int = pydantic.Field(
        default=120,
        ge=0,
        le=3600,
        description="A scale-down happens only after the lower count was wanted for this long (no flapping).",
    )
    max_scale_up_rate: float = pydantic.Field(
        default=1000.0, ge=1.0, le=1000.0, description="At most this factor of the ready pods per decision."
    )
    max_scale_down_rate: float = pydantic.Field(
        default=2.0, ge=1.0, le=1000.0, description="At most ready/rate pods removed per decision."
    )
    scale_to_zero_after_seconds: int = pydantic.Field(
        default=300,
        ge=10,
        le=86400,
        description="With minReplicas 0: scale to zero once no request came for this long.",
    )
    activator_timeout_seconds: int = pydantic.Field(
        default=300,
        ge=5,
        le=3600,
        description="With minReplicas 0: how long the activator holds a request for a pod to start "
        "before it answers 503.",
    )

    @pydantic.model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("autoscaling.minReplicas must not exceed autoscaling.maxReplicas")
        if self.panic_window_seconds >= self.stable_window_seconds:
            raise ValueError("autoscaling.panicWindowSeconds must be shorter than stableWindowSeconds")
        if self.min_replicas == 0 and self.autoscaler != "kpa":
            raise ValueError("autoscaling.minReplicas 0 (scale to zero) needs autoscaler kpa")
        return self


class RollbackPolicy(common.ApiModel):
    """When a canary is worse than the stable version by these margins, it is rolled back.

    Both tracks are compared over the same recent window (``windowSeconds``), as Flagger's and
    KServe's analyses are: an old error spike neither keeps a recovered canary bad nor hides in a
    stable track's long history.
    """

    error_rate_margin: float = pydantic.Field(
        default=0.02, ge=0, le=1, description="Roll back when the canary's 5xx rate exceeds stable's by this."
    )
    p95_latency_margin_ms: float = pydantic.Field(
        default=50.0,
        ge=0,
        le=600000,
        description="Roll back when the canary's p95 latency exceeds stable's by this.",
    )
    min_requests: int = pydantic.Field(
        default=100,
        ge=1,
        le=10_000_000,
        description="Judge the canary only after it answered this many requests within the window.",
    )
    window_seconds: int = pydantic.Field(
        default=60,
        ge=10,
        le=3600,
        description="The sliding window, in seconds, over which both tracks' error rates and p95 "
        "latencies are compared (their requests in the last windowSeconds, not since their pods started).",
    )


class Canary(common.ApiModel):
    """A second model version behind the same Service, with a share of the traffic.

    With ``model`` set, that model runs beside spec.model at its share until the spec changes
    (KServe's canaryTrafficPercent). Without it, the canary is automatic: each NEW version
    spec.model resolves to (a Model alias moved, the TrainingJob re-ran, the sweep found a better
    trial) first serves this share beside the version served now; Healthy promotes it to every
    pod, RolledBack keeps the served version and refuses that one.
    """

    model: ModelSource | None = pydantic.Field(
        default=None,
        description="The canary's model (same choices as spec.model). Unset: each new version of "
        "spec.model is the canary, promoted when Healthy and refused when RolledBack.",
    )
    traffic_percent: int = pydantic.Field(
        default=10, ge=0, le=100, description="Share of requests for the canary (by replica weighting)."
    )
    rollback: RollbackPolicy = pydantic.Field(
        default_factory=RollbackPolicy, description="Automatic rollback thresholds."
    )


class RetrainTemplate(common.ApiModel):
    """A TrainingJob to create when drift is detected."""

    spec: dict[str, Any] = pydantic.Field(
        description="A TrainingJob spec (validated by the TrainingJob CRD when created).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    cooldown_seconds: int = pydantic.Field(
        default=3600, ge=60, le=30 * 86400, description="At most one retraining job per this many seconds."
    )


class DriftPolicy(common.ApiModel):
    """Drift monitoring: PSI of recent inputs against the training baseline."""

    threshold: float = pydantic.Field(
        default=0.2, gt=0, le=100, description="DriftDetected when the largest per-feature PSI passes this."
    )
    window: int = pydantic.Field(default=1000, ge=10, le=1_000_000, description="Rows in the sliding window.")
    min_rows: int = pydantic.Field(
        default=200,
        ge=1,
        le=1_000_000,
        description="Judge drift only once a pod's window holds this many rows.",
    )
    retrain: RetrainTemplate | None = pydantic.Field(
        default=None, description="Optional TrainingJob to create when drift is detected."
    )


RETRAIN_NEEDS_ALIAS = "!has(self.retrain) || (has(self.model.modelRef) && !has(self.model.modelRef.version))"
RETRAIN_LABELS_NEED_REVIEW = (
    "!has(self.retrain) || !has(self.retrain.triggers) || !has(self.retrain.triggers.labelledRows) || "
    "(has(self.logging) && has(self.logging.review) && self.logging.review.enabled)"
)
CAPTURE_SOMETHING = "self.lowConfidence || self.sampleRate > 0.0"
CAPTURE_S3_ONLY_FOR_S3 = "!has(self.s3) || self.storageUri.startsWith('s3://')"


class CaptureSettings(common.ApiModel):
    """What the model server captures and how it rolls its files (shared by spec.logging and the
    server's own config)."""

    low_confidence: bool = pydantic.Field(
        default=True,
        description="Capture every row whose top class probability is under lowConfidenceThreshold.",
    )
    sample_rate: float = pydantic.Field(
        default=0.0,
        ge=0,
        le=1,
        description="Also capture this share of all requests, every row of a chosen request "
        "(0: none, 1: every request).",
    )
    max_file_rows: int = pydantic.Field(
        default=100_000, ge=100, le=10_000_000, description="A Parquet file is closed at this many rows."
    )
    max_file_bytes: int = pydantic.Field(
        default=16 << 20,
        ge=1 << 20,
        le=1 << 30,
        description="A file is closed once its buffered rows take this many bytes in memory (the "
        "Parquet file is usually smaller).",
    )
    roll_seconds: int = pydantic.Field(
        default=60,
        ge=5,
        le=86400,
        description="A file is closed at most this long after its first row: how soon a captured row "
        "becomes visible.",
    )
    queue_rows: int = pydantic.Field(
        default=10_000,
        ge=100,
        le=1_000_000,
        description="Rows each server process holds waiting for the writer; beyond it rows are dropped "
        "(and counted in mlops_serve_capture_dropped_total), never the answer.",
    )


REVIEW_NO_GPU = "!has(self.resources) || !has(self.resources.gpu) || self.resources.gpu == 0"


class ReviewSpec(common.ApiModel):
    """The review page of a deployment's captured rows (``python -m mlops_workloads.review``)."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": REVIEW_NO_GPU,
                    "message": "logging.review.resources: the review server takes no GPU",
                    "fieldPath": ".resources.gpu",
                }
            ]
        }
    )

    enabled: bool = pydantic.Field(
        default=False,
        description="Run the review server: a Deployment and a ClusterIP Service <name>-review (port "
        "80) that lists the captured rows waiting for a label, shows the model's answer beside the "
        "inputs and saves the labels people give under <storageUri>/<namespace>/<name>/labels/. It "
        "has no login of its own: put an auth proxy in front (it takes the reviewer from the "
        "X-Forwarded-User or X-Remote-User header the proxy sets).",
    )
    resources: common.Resources = pydantic.Field(
        default_factory=lambda: common.Resources(cpu="100m", memory="256Mi"),
        description="Resources of the review pod (it holds an index of the captured rows in memory).",
    )

    @pydantic.model_validator(mode="after")
    def _no_gpu(self) -> ReviewSpec:
        if self.resources.gpu:
            raise ValueError("logging.review.resources: the review server takes no GPU")
        return self


class LoggingSpec(CaptureSettings):
    """Capture of predictions for review and retraining: low-confidence rows and a sample of requests.

    Each server process writes them in the background to Parquet files under
    ``<storageUri>/<namespace>/<deployment>/captured/<yyyy>/<mm>/<dd>/`` (schema in
    ``mlops_workloads.capture``). A slow, full or unwritable store never delays or fails an answer:
    rows that cannot be written are dropped and counted.
    """

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": CAPTURE_SOMETHING,
                    "message": "logging: set lowConfidence: true or a sampleRate above 0 (or remove logging)",
                    "fieldPath": ".sampleRate",
                },
                {
                    "rule": CAPTURE_S3_ONLY_FOR_S3,
                    "message": "logging.s3 only applies to an s3:// logging.storageUri",
                    "fieldPath": ".s3",
                },
            ]
        }
    )

    storage_uri: str = pydantic.Field(
        max_length=2048,
        pattern=common.STORAGE_URI_PATTERN,
        description="Where the deployment's captured rows (and later their labels) live: "
        "pvc://<claim>/<path>, file:///<path> or s3://<bucket>/<prefix>; mounted read-write into the "
        "serving pods.",
    )
    s3: common.S3Connection | None = pydantic.Field(
        default=None, description="How the serving pods reach an s3:// storageUri."
    )
    review: ReviewSpec = pydantic.Field(
        default_factory=ReviewSpec,
        description="A web page (and `mlops review`) for people to confirm or correct the captured "
        "rows' labels.",
    )

    @pydantic.model_validator(mode="after")
    def _captures_something(self) -> LoggingSpec:
        if not self.low_confidence and self.sample_rate <= 0:
            raise ValueError("logging: set lowConfidence: true or a sampleRate above 0 (or remove logging)")
        if self.s3 is not None and not self.storage_uri.startswith("s3://"):
            raise ValueError("logging.s3 only applies to an s3:// logging.storageUri")
        return self

    def root_uri(self, namespace: str, name: str) -> str:
        """The deployment's own directory under storageUri: ``<storageUri>/<namespace>/<name>``."""
        return common.StorageLocation.parse(self.storage_uri).join(namespace, name).uri()


class CaptureConfig(CaptureSettings):
    """The server's capture config: where to write (as the server sees it) and what."""

    uri: str = pydantic.Field(
        max_length=2048,
        pattern=common.STORAGE_URI_PATTERN,
        description="The deployment's capture root; files go under <uri>/captured/.",
    )
    s3: common.S3Connection | None = pydantic.Field(default=None, description="How to reach an s3:// uri.")


REVIEW_USER_HEADERS = ("X-Forwarded-User", "X-Remote-User")


class ReviewConfig(common.ApiModel):
    """Config of ``python -m mlops_workloads.review`` (MLOPS_CONFIG / MLOPS_CONFIG_FILE or flags)."""

    uri: str = pydantic.Field(
        max_length=2048,
        pattern=common.STORAGE_URI_PATTERN,
        description="The deployment's capture root as the server sees it: rows under <uri>/captured/, "
        "labels written under <uri>/labels/.",
    )
    s3: common.S3Connection | None = pydantic.Field(default=None, description="How to reach an s3:// uri.")
    deployment: str = pydantic.Field(
        default="model", min_length=1, max_length=253, description="The ModelDeployment's name (shown)."
    )
    namespace: str = pydantic.Field(default="", max_length=63, description="Its namespace (shown).")
    host: str = pydantic.Field(default="0.0.0.0", description="Listen address.")
    port: int = pydantic.Field(default=8080, ge=0, le=65535, description="Listen port (0: any free port).")
    refresh_seconds: float = pydantic.Field(
        default=5.0,
        ge=0.0,
        le=3600,
        description="List the store's files again at most this often (new capture files appear as "
        "traffic flows; other reviewers' labels too).",
    )
    user_headers: list[str] = pydantic.Field(
        default_factory=lambda: list(REVIEW_USER_HEADERS),
        max_length=8,
        description="Request headers naming the authenticated reviewer, set by an auth proxy in front; "
        "the first present wins over the name a person types. Empty: always the typed name.",
    )
    pvc_root: str = pydantic.Field(default="/mnt/mlops", description="Where pvc:// claims are mounted.")
    secrets_root: str = pydantic.Field(
        default=workload.SECRETS_DIR, description="Where Secrets are mounted: <root>/s3/<secret>/<key>."
    )


class TracingSpec(common.ApiModel):
    """OpenTelemetry spans of the serving pods (the standard OTEL_* environment, set for you)."""

    exporter: Literal["otlp", "console"] = pydantic.Field(
        default="otlp", description="otlp: OTLP over HTTP/protobuf to `endpoint`; console: the pod's log."
    )
    endpoint: str | None = pydantic.Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
        description="OTLP/HTTP traces endpoint (e.g. http://otel-collector.observability:4318/v1/traces); "
        "default: the SDK's (localhost:4318).",
    )
    sampling_ratio: float = pydantic.Field(
        default=1.0,
        ge=0,
        le=1,
        description="Share of the traces that start at the server (requests without a traceparent) "
        "that are recorded; a caller's sampled flag is always followed.",
    )


class ActivatorRoute(common.ApiModel):
    """One port the activator listens on and the upstream it hands connections to."""

    name: str = pydantic.Field(min_length=1, max_length=15, description="The port's name (http, grpc).")
    port: int = pydantic.Field(ge=0, le=65535, description="Listen port (0: any free port).")
    upstream_host: str = pydantic.Field(
        min_length=1, max_length=253, description="Host of the serving pods' private Service."
    )
    upstream_port: int = pydantic.Field(ge=1, le=65535, description="Its port.")
    http: bool = pydantic.Field(
        default=True, description="A request held past the timeout is answered an HTTP 503 (else closed)."
    )


class ActivatorConfig(common.ApiModel):
    """Config of ``python -m mlops_workloads.activator`` (MLOPS_CONFIG / MLOPS_CONFIG_FILE or flags)."""

    routes: list[ActivatorRoute] = pydantic.Field(
        min_length=1, max_length=4, description="What it listens on and hands to whom."
    )
    host: str = pydantic.Field(default="0.0.0.0", description="Listen address.")
    admin_port: int = pydantic.Field(
        default=9090, ge=0, le=65535, description="Port of /healthz and /metrics (0: any free port)."
    )
    timeout_seconds: float = pydantic.Field(
        default=300.0, gt=0, le=3600, description="How long a connection waits for its upstream."
    )
    retry_seconds: float = pydantic.Field(
        default=0.1, gt=0, le=10, description="Pause between two connection attempts to the upstream."
    )
    deployment: str = pydantic.Field(default="", max_length=253, description="The ModelDeployment (logs).")


class ModelDeploymentSpec(common.ApiModel):
    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.replicas) && has(self.autoscaling))",
                    "message": "set either replicas or autoscaling, not both",
                    "fieldPath": ".replicas",
                },
                {
                    "rule": RETRAIN_NEEDS_ALIAS,
                    "message": "retrain needs model.modelRef with an alias (the alias a better challenger "
                    "takes), not a fixed version",
                    "fieldPath": ".retrain",
                },
                {
                    "rule": "!has(self.retrain) || !has(self.drift) || !has(self.drift.retrain)",
                    "message": "set retrain (train, evaluate, promote) or drift.retrain (a bare TrainingJob "
                    "on drift), not both; retrain.triggers.drift covers drift",
                    "fieldPath": ".drift.retrain",
                },
                {
                    "rule": RETRAIN_LABELS_NEED_REVIEW,
                    "message": "retrain.triggers.labelledRows needs logging.review.enabled (the review "
                    "server counts the labels)",
                    "fieldPath": ".retrain.triggers.labelledRows",
                },
            ]
        }
    )

    model: ModelSource = pydantic.Field(description="The model to serve.")
    replicas: int | None = pydantic.Field(
        default=None,
        ge=0,
        le=1000,
        description="A fixed number of pods (default 1 when autoscaling is unset).",
    )
    autoscaling: Autoscaling | None = pydantic.Field(default=None, description="Scale on load instead.")
    resources: common.Resources = pydantic.Field(
        default_factory=lambda: common.Resources(cpu="500m", memory="512Mi"),
        description="Resources of each serving pod.",
    )
    workers: int = pydantic.Field(
        default=1, ge=1, le=64, description="Server processes per pod (SO_REUSEPORT); match the pod's CPU."
    )
    low_confidence_threshold: float = pydantic.Field(
        default=0.6,
        ge=0,
        le=1,
        description="Rows whose top class probability is under this are flagged lowConfidence.",
    )
    max_batch_rows: int = pydantic.Field(
        default=1000, ge=1, le=100000, description="Most rows per request; larger batches get 413."
    )
    canary: Canary | None = pydantic.Field(
        default=None, description="Roll out a new version to a share of traffic."
    )
    stage: Literal["staging", "production", "archived"] = pydantic.Field(
        default="staging",
        description="Registry stage; archived scales the deployment to zero and keeps the record.",
    )
    drift: DriftPolicy = pydantic.Field(default_factory=DriftPolicy, description="Drift monitoring.")
    logging: LoggingSpec | None = pydantic.Field(
        default=None,
        description="Capture low-confidence rows and a sample of requests to storage (for review "
        "and retraining).",
    )
    image: str | None = pydantic.Field(
        default=None, max_length=512, description="Server image; defaults to the operator's workload image."
    )
    tracing: TracingSpec | None = pydantic.Field(
        default=None,
        description="OpenTelemetry spans of each prediction (decode, queue, predict, encode); the "
        "traceparent header is answered either way.",
    )
    retrain: retrain_api.RetrainPolicy | None = pydantic.Field(
        default=None,
        description="Train a challenger when a trigger fires, score it against the champion on the same "
        "held-out rows and move the alias only when it wins (then the canary rolls it out).",
    )

    @pydantic.model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> ModelDeploymentSpec:
        if self.replicas is not None and self.autoscaling is not None:
            raise ValueError("set either replicas or autoscaling, not both")
        if self.retrain is not None:
            ref = self.model.model_ref
            if ref is None or ref.version is not None:
                raise ValueError("retrain needs model.modelRef with an alias, not a fixed version")
            if self.drift.retrain is not None:
                raise ValueError("set retrain or drift.retrain, not both")
            labelled = self.retrain.triggers.labelled_rows is not None
            if labelled and (self.logging is None or not self.logging.review.enabled):
                raise ValueError("retrain.triggers.labelledRows needs logging.review.enabled")
        return self


class AutoscalerSample(common.ApiModel):
    """One observation of the deployment's total load."""

    t: float = pydantic.Field(description="Unix time of the observation (seconds).")
    v: float = pydantic.Field(ge=0, description="Total load across ready pods (concurrency or requests/s).")


class AutoscalerRecommendation(common.ApiModel):
    t: float = pydantic.Field(description="Unix time of the recommendation (seconds).")
    n: int = pydantic.Field(ge=0, description="Recommended replicas.")


class AutoscalerState(common.ApiModel):
    """What the KPA decision needs from the past; bounded so the status stays small."""

    samples: list[AutoscalerSample] = pydantic.Field(
        default_factory=list, max_length=128, description="Load samples within the stable window."
    )
    recommendations: list[AutoscalerRecommendation] = pydantic.Field(
        default_factory=list,
        max_length=128,
        description="Recent recommendations within the scale-down delay.",
    )
    panic_since: float | None = pydantic.Field(
        default=None, description="Unix time panic mode began or was extended."
    )
    max_panic_replicas: int = pydantic.Field(
        default=0, ge=0, description="Highest count wanted during this panic."
    )
    last_active: float | None = pydantic.Field(
        default=None,
        description="Unix time of the last sample with load (minReplicas 0: idle since then).",
    )


class ScaleDecision(common.ApiModel):
    desired: int = pydantic.Field(ge=0, description="Replicas decided.")
    reason: str = pydantic.Field(default="", max_length=256, description="Why (CamelCase).")
    message: str = pydantic.Field(default="", max_length=1024, description="The numbers behind it.")
    time: str | None = pydantic.Field(default=None, description="When it was made (RFC 3339).")


class CanaryStatus(common.ApiModel):
    state: Literal["Progressing", "Healthy", "RolledBack", "Pending", "Promoted"] = pydantic.Field(
        default="Pending",
        description="Progressing (judging), Healthy, RolledBack, Pending (model not ready) or Promoted "
        "(an automatic canary that was Healthy now serves on every pod).",
    )
    model_uri: str | None = pydantic.Field(default=None, description="The canary's model URI.")
    model_version: int | None = pydantic.Field(
        default=None, ge=1, description="With model.modelRef: the Model version the canary serves."
    )
    model_digest: str | None = pydantic.Field(default=None, description="The canary's model digest.")
    traffic_percent: float | None = pydantic.Field(
        default=None, description="Effective share of traffic (canary pods / all pods)."
    )
    replicas: int = pydantic.Field(default=0, ge=0, description="Canary pods.")
    spec_hash: str | None = pydantic.Field(
        default=None, description="Hash of the canary spec this state is about."
    )
    message: str = pydantic.Field(default="", max_length=1024, description="The verdict's numbers.")


class DriftStatus(common.ApiModel):
    score: float | None = pydantic.Field(default=None, description="Largest per-feature PSI across pods.")
    feature: str | None = pydantic.Field(default=None, description="The feature with that score.")
    rows: int = pydantic.Field(default=0, ge=0, description="Rows in the largest window behind the score.")
    retrains: int = pydantic.Field(default=0, ge=0, description="Retraining jobs created so far.")
    last_retrain_time: str | None = pydantic.Field(default=None, description="When the last one was created.")
    last_retrain_job: str | None = pydantic.Field(default=None, description="Its name.")


class ScaleToZeroStatus(common.ApiModel):
    """With autoscaling.minReplicas 0: where the Service sends requests and the cold starts seen."""

    routing: Literal["pods", "activator"] = pydantic.Field(
        default="pods", description="What the Service selects: the serving pods or the activator."
    )
    since: str | None = pydantic.Field(default=None, description="When routing last changed (RFC 3339).")
    activator_ready: bool = pydantic.Field(default=False, description="An activator pod is ready.")
    waiting: int = pydantic.Field(default=0, ge=0, description="Connections the activator holds now.")
    cold_starts: int = pydantic.Field(default=0, ge=0, description="Cold starts the activator saw.")
    last_cold_start_seconds: float | None = pydantic.Field(
        default=None,
        ge=0,
        description="The last cold start: from the first held request to its pod answering the "
        "connection, as the activator measured it.",
    )
    last_cold_start_time: str | None = pydantic.Field(
        default=None, description="When the last cold start ended (RFC 3339)."
    )


class ReviewStatus(common.ApiModel):
    url: str | None = pydantic.Field(default=None, description="In-cluster URL of the review page.")


class ModelDeploymentStatus(common.StatusBase):
    url: str | None = pydantic.Field(default=None, description="In-cluster URL of the model's v2 endpoint.")
    ready: str | None = pydantic.Field(default=None, description="Ready/desired pods, for printer columns.")
    ready_replicas: int = pydantic.Field(default=0, ge=0, description="Pods ready to serve.")
    desired_replicas: int = pydantic.Field(default=0, ge=0, description="Pods wanted.")
    stage: str | None = pydantic.Field(default=None, description="The stage the deployment is in.")
    served_model_uri: str | None = pydantic.Field(default=None, description="URI of the model being served.")
    served_model_version: int | None = pydantic.Field(
        default=None, ge=1, description="With model.modelRef: the Model version being served."
    )
    served_model_s3: common.S3Connection | None = pydantic.Field(
        default=None,
        description="How the pods reach an s3:// servedModelUri (endpoint and Secret name, never a "
        "credential), kept so that a model being replaced keeps its connection.",
    )
    model_digest: str | None = pydantic.Field(
        default=None,
        description="sha256 of the served model (model.skops, or model.onnx with its preprocessor).",
    )
    canary: CanaryStatus | None = pydantic.Field(default=None, description="The canary's state.")
    last_scale: ScaleDecision | None = pydantic.Field(default=None, description="The last scale decision.")
    autoscaler: AutoscalerState | None = pydantic.Field(
        default=None, description="KPA state kept across restarts."
    )
    drift: DriftStatus | None = pydantic.Field(default=None, description="Drift across the serving pods.")
    scale_to_zero: ScaleToZeroStatus | None = pydantic.Field(
        default=None, description="With autoscaling.minReplicas 0: routing and cold starts."
    )
    review: ReviewStatus | None = pydantic.Field(
        default=None, description="With spec.logging.review.enabled: where the review page is."
    )
    retrain: retrain_api.RetrainStatus | None = pydantic.Field(
        default=None, description="With spec.retrain: the run going on and the last decisions."
    )


class ModelDeployment(common.Resource):
    crd: ClassVar[common.CRDMeta] = common.CRDMeta(
        kind="ModelDeployment",
        plural="modeldeployments",
        singular="modeldeployment",
        short_names=("md",),
        printer_columns=(
            common.PrinterColumn(name="Phase", json_path=".status.phase"),
            common.PrinterColumn(name="Ready", json_path=".status.ready"),
            common.PrinterColumn(name="URL", json_path=".status.url"),
            common.PrinterColumn(name="Stage", json_path=".spec.stage"),
            common.PrinterColumn(
                name="Version", json_path=".status.servedModelVersion", type="integer", priority=1
            ),
            common.PrinterColumn(name="Age", json_path=".metadata.creationTimestamp", type="date"),
        ),
        description="Serves a trained model with autoscaling, canary rollouts and drift monitoring.",
    )

    spec: ModelDeploymentSpec = pydantic.Field(description="The model to serve and how to serve it.")
    status: ModelDeploymentStatus = pydantic.Field(
        default_factory=ModelDeploymentStatus, description="What the operator observed and decided."
    )


class ServeConfig(common.ApiModel):
    """Config of ``python -m mlops_workloads.serve`` (MLOPS_CONFIG / MLOPS_CONFIG_FILE or flags)."""

    model_dir: str = pydantic.Field(
        description="Local path (or file:// / pvc:// URI) of the model directory."
    )
    model_name: str = pydantic.Field(
        default="model", min_length=1, max_length=253, description="Name in URLs."
    )
    model_version: str = pydantic.Field(
        default="1", max_length=128, description="Version reported by /v2/models."
    )
    host: str = pydantic.Field(default="0.0.0.0", description="Listen address.")
    port: int = pydantic.Field(default=8080, ge=0, le=65535, description="Listen port (0: any free port).")
    workers: int = pydantic.Field(
        default=1, ge=1, le=64, description="Processes sharing the port (SO_REUSEPORT)."
    )
    low_confidence_threshold: float = pydantic.Field(default=0.6, ge=0, le=1, description="See the spec.")
    max_batch_rows: int = pydantic.Field(default=1000, ge=1, le=100000, description="See the spec.")
    max_body_bytes: int = pydantic.Field(default=16 << 20, ge=1024, description="Larger bodies get 413.")
    drift_window: int = pydantic.Field(
        default=1000, ge=1, le=1_000_000, description="Rows in the drift window."
    )
    drain_seconds: float = pydantic.Field(
        default=0.0,
        ge=0,
        le=300,
        description="After SIGTERM: report not-ready, keep serving this long, then exit.",
    )
    pvc_root: str = pydantic.Field(default="/mnt/mlops", description="Where pvc:// claims are mounted.")
    s3: common.S3Connection | None = pydantic.Field(default=None, description="How to reach an s3:// model.")
    secrets_root: str = pydantic.Field(
        default=workload.SECRETS_DIR, description="Where Secrets are mounted: <root>/s3/<secret>/<key>."
    )
    staging_dir: str = pydantic.Field(
        default=workload.STAGING_DIR, description="Where an s3:// model is downloaded to."
    )
    capture: CaptureConfig | None = pydantic.Field(
        default=None, description="Capture of predictions (spec.logging); none when unset."
    )
