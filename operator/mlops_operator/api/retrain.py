"""Retraining that must earn its place: ``ModelDeployment.spec.retrain`` and the evaluation workload.

A deployment that serves a Model alias (``spec.model.modelRef``) may say when to train a
challenger (a schedule, a new version of the Dataset, drift, N new labelled rows, or by hand
with the ``mlops.dev/retrain`` annotation), how (a TrainingJob or sweep template, registered
into the served Model) and how the challenger must compare with the champion before it serves.

Why the shapes below:
- One run at a time, one state in ``status.retrain.current`` (Refreshing → Training →
  Evaluating), then one entry of a bounded history (Promoted, Rejected or Failed, with the
  numbers). Nothing lives in the operator's memory: the run's objects have deterministic names
  (``<deployment>-challenger-<run>``, ``<deployment>-evaluate-<run>``), so a restart finds them.
- The data first: every trigger but a new Dataset version refreshes the Dataset (the
  ``mlops.dev/refresh`` annotation) and waits for it, so the challenger trains on the latest
  rows, the labels people just gave included.
- The same held-out rows for both: the evaluation Job (``python -m mlops_workloads.evaluate``)
  scores champion and challenger on the test split of the Dataset version the challenger was
  trained on, plus the reviewed rows of this deployment that are not in that version's train or
  validation split (a row the challenger learnt from would flatter it). The operator only reads
  the numbers it writes to its termination message.
- Promotion is an alias move, like a person's (the ``alias.mlops.dev/<alias>`` annotation on the
  Model, server-side applied as field manager ``mlops-retrain``), so the Model's alias history
  says who moved it, and the deployment rolls the new version out through its canary.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from mlops_operator.api import common, dataset, estimators, trainingjob, workload

RETRAIN_ANNOTATION = "mlops.dev/retrain"
"""Any new value on the ModelDeployment asks for one run now (trigger Manual), cooldown or not."""
RETRAIN_REQUEST_MAX = 256
FIELD_MANAGER = "mlops-retrain"
"""The field manager that moves an alias (the Model's alias history shows it)."""
HISTORY_MAX = 20
CONDITION = "Retraining"

Trigger = Literal["Manual", "Drift", "LabelledRows", "NewDatasetVersion", "Schedule"]
RunPhase = Literal["Refreshing", "Training", "Evaluating", "Promoted", "Rejected", "Failed"]
FINISHED_PHASES: tuple[str, ...] = ("Promoted", "Rejected", "Failed")
EvaluationMetric = Literal[
    "accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "rmse", "mae", "r2"
]  # fmt: skip
"""The built-in metrics (``estimators.CLASSIFICATION_METRICS + REGRESSION_METRICS``; a unit test
keeps them equal): the evaluation Job computes them itself, for both models alike."""


class RetrainTriggers(common.ApiModel):
    """When to train a challenger (any of them; the mlops.dev/retrain annotation always works)."""

    schedule: str | None = pydantic.Field(
        default=None,
        pattern=dataset.CRON_PATTERN,
        description="A cron schedule of five fields (minute hour day-of-month month day-of-week) or a "
        "macro (@daily...), as CronJob takes it. Times that pass while a run is going on start one run "
        "after it, not one each.",
    )
    time_zone: str | None = pydantic.Field(
        default=None, max_length=64, description="The IANA time zone the schedule is read in (default UTC)."
    )
    new_dataset_version: bool = pydantic.Field(
        default=True,
        description="Train when the template's Dataset has a version that neither the champion nor an "
        "earlier challenger was trained on.",
    )
    drift: bool = pydantic.Field(
        default=False, description="Train when the deployment's DriftDetected condition is True."
    )
    labelled_rows: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=10_000_000,
        description="Train once this many captured rows got a confirmed or corrected label since the last "
        "run (counted by the review server: needs spec.logging.review.enabled).",
    )

    @pydantic.model_validator(mode="after")
    def _schedule(self) -> RetrainTriggers:
        if self.schedule is not None:
            dataset.Refresh(schedule=self.schedule, time_zone=self.time_zone)  # the same checks
        return self


class RetrainTemplate(common.ApiModel):
    """The challenger: a TrainingJob or a sweep (exactly one), in the shape of its kind's spec."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.trainingJob) != has(self.sweep)",
                    "message": "retrain.template: set exactly one of trainingJob or sweep",
                }
            ]
        }
    )

    training_job: dict[str, Any] | None = pydantic.Field(
        default=None,
        description="A TrainingJob spec. Its registerAs is set to the served Model; its datasetRef names "
        "the Dataset that is refreshed and watched for new versions (a pinned version is dropped: a "
        "challenger trains on the latest one).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "type": "object"},
    )
    sweep: dict[str, Any] | None = pydantic.Field(
        default=None,
        description="A HyperparameterSweep spec. Its promote is set to record the best trial in the served "
        "Model under the alias challenger (never the served alias); its trialTemplate's datasetRef is "
        "the Dataset refreshed and watched.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True, "type": "object"},
    )

    @pydantic.model_validator(mode="after")
    def _exactly_one(self) -> RetrainTemplate:
        if (self.training_job is None) == (self.sweep is None):
            raise ValueError("retrain.template: set exactly one of trainingJob or sweep")
        return self

    @property
    def kind(self) -> Literal["TrainingJob", "HyperparameterSweep"]:
        return "TrainingJob" if self.training_job is not None else "HyperparameterSweep"


class RetrainEvaluation(common.ApiModel):
    """How the challenger is compared with the champion before it may serve."""

    metric: EvaluationMetric | None = pydantic.Field(
        default=None,
        description="The metric both models are scored on (computed by the evaluation Job): accuracy "
        "for classification and rmse for regression when unset.",
    )
    direction: trainingjob.Direction | None = pydantic.Field(
        default=None, description="maximize or minimize; defaults to minimize for log_loss, rmse and mae."
    )
    min_improvement: float = pydantic.Field(
        default=0.0,
        ge=0,
        le=1e9,
        description="How much better than the champion the challenger must be (absolute, in the metric's "
        "unit); 0: any strict improvement.",
    )
    include_reviewed: bool = pydantic.Field(
        default=True,
        description="Score on the reviewed rows too (confirmed or corrected labels of this deployment's "
        "captured rows that are not in the challenger's train or validation split), beside the test "
        "split; the decision is on both together.",
    )
    resources: common.Resources = pydantic.Field(
        default_factory=lambda: common.Resources(cpu="500m", memory="1Gi"),
        description="Resources of the evaluation pod.",
    )

    def effective_direction(self, metric: str) -> trainingjob.Direction:
        return self.direction or estimators.default_direction(metric)


class RetrainPolicy(common.ApiModel):
    """Train a challenger on the latest data and serve it only if it beats the champion."""

    triggers: RetrainTriggers = pydantic.Field(
        default_factory=RetrainTriggers, description="When to train a challenger."
    )
    template: RetrainTemplate = pydantic.Field(description="What trains the challenger.")
    evaluation: RetrainEvaluation = pydantic.Field(
        default_factory=RetrainEvaluation, description="How it must compare with the champion."
    )
    cooldown_seconds: int = pydantic.Field(
        default=600,
        ge=0,
        le=30 * 86400,
        description="At least this long between the start of one run and the next (the annotation "
        "ignores it).",
    )
    history_limit: int = pydantic.Field(
        default=10, ge=1, le=HISTORY_MAX, description="Finished runs kept in status.retrain.history."
    )
    suspend: bool = pydantic.Field(default=False, description="Start no run (one going on finishes).")


class EvaluationScores(common.ApiModel):
    """Both models' scores on one set of rows."""

    rows: int = pydantic.Field(default=0, ge=0, description="Rows scored.")
    champion: float | None = pydantic.Field(default=None, description="The champion's score.")
    challenger: float | None = pydantic.Field(default=None, description="The challenger's score.")


class RetrainRun(common.ApiModel):
    """One retraining run: why it started, what it trained, how both models scored, what was decided."""

    run: int = pydantic.Field(ge=1, description="The run's number (1, 2, ...).")
    trigger: Trigger = pydantic.Field(description="What started it.")
    trigger_message: str = pydantic.Field(default="", max_length=512, description="The trigger's numbers.")
    phase: RunPhase = pydantic.Field(
        description="Refreshing (the Dataset), Training, Evaluating; then Promoted, Rejected or Failed."
    )
    reason: str = pydantic.Field(default="", max_length=128, description="Why it is where it is (CamelCase).")
    message: str = pydantic.Field(
        default="", max_length=1024, description="The decision's numbers, for people."
    )
    started: str | None = pydantic.Field(default=None, description="When it started (RFC 3339).")
    finished: str | None = pydantic.Field(default=None, description="When it was decided (RFC 3339).")
    refresh_request: str | None = pydantic.Field(
        default=None, max_length=RETRAIN_REQUEST_MAX, description="The mlops.dev/refresh value it set."
    )
    challenger: str | None = pydantic.Field(
        default=None, max_length=253, description="The TrainingJob or sweep."
    )
    challenger_kind: Literal["TrainingJob", "HyperparameterSweep"] | None = pydantic.Field(
        default=None, description="Its kind."
    )
    dataset_digest: str | None = pydantic.Field(
        default=None, max_length=128, description="The Dataset version the challenger was trained on."
    )
    challenger_version: int | None = pydantic.Field(
        default=None, ge=1, description="The Model version the challenger was registered as."
    )
    champion_version: int | None = pydantic.Field(
        default=None, ge=1, description="The version the alias named when the evaluation started."
    )
    metric: str | None = pydantic.Field(default=None, max_length=63, description="The metric compared.")
    direction: trainingjob.Direction | None = pydantic.Field(default=None, description="Its direction.")
    test: EvaluationScores | None = pydantic.Field(default=None, description="Scores on the test split.")
    reviewed: EvaluationScores | None = pydantic.Field(
        default=None, description="Scores on the held-out reviewed rows."
    )
    overall: EvaluationScores | None = pydantic.Field(
        default=None, description="Scores on both together (what the decision compared)."
    )
    rollout: str | None = pydantic.Field(
        default=None,
        max_length=32,
        description="After a promotion: the canary's verdict on the new version (Progressing, Promoted, "
        "RolledBack).",
    )

    @property
    def finished_run(self) -> bool:
        return self.phase in FINISHED_PHASES


class RetrainStatus(common.ApiModel):
    """The run going on, the last finished ones and what the triggers compare with."""

    runs: int = pydantic.Field(default=0, ge=0, description="Runs started so far.")
    current: RetrainRun | None = pydantic.Field(default=None, description="The run going on.")
    history: list[RetrainRun] = pydantic.Field(
        default_factory=list, max_length=HISTORY_MAX, description="Finished runs, newest first."
    )
    dataset_digest: str | None = pydantic.Field(
        default=None,
        max_length=128,
        description="The Dataset version the last run trained on (a new one triggers newDatasetVersion).",
    )
    labelled_rows: int | None = pydantic.Field(
        default=None, ge=0, description="Labelled rows counted when the last run started (the baseline)."
    )
    last_request: str | None = pydantic.Field(
        default=None,
        max_length=RETRAIN_REQUEST_MAX,
        description=f"The {RETRAIN_ANNOTATION} annotation value last acted on.",
    )
    last_run_time: str | None = pydantic.Field(default=None, description="When the last run started.")
    next_schedule: str | None = pydantic.Field(
        default=None, description="When triggers.schedule starts a run next (RFC 3339)."
    )


class EvaluatedModel(common.ApiModel):
    """One of the two models an evaluation scores."""

    uri: str = pydantic.Field(
        max_length=2048, pattern=common.STORAGE_URI_PATTERN, description="Its directory."
    )
    s3: common.S3Connection | None = pydantic.Field(default=None, description="How to reach an s3:// uri.")
    version: int | None = pydantic.Field(default=None, ge=1, description="Its Model version (shown).")


class EvaluateConfig(common.ApiModel):
    """Config of ``python -m mlops_workloads.evaluate`` (MLOPS_CONFIG / MLOPS_CONFIG_FILE)."""

    dataset_uri: str = pydantic.Field(
        max_length=2048,
        pattern=common.STORAGE_URI_PATTERN,
        description="The Dataset version directory whose test split both models are scored on (its train "
        "and validation splits say which reviewed rows the challenger learnt from).",
    )
    dataset_s3: common.S3Connection | None = pydantic.Field(default=None, description="For s3://.")
    champion: EvaluatedModel = pydantic.Field(description="The version the alias names.")
    challenger: EvaluatedModel = pydantic.Field(description="The version just trained.")
    metric: EvaluationMetric | None = pydantic.Field(
        default=None, description="The metric (accuracy for classification, rmse for regression when unset)."
    )
    reviewed_uri: str | None = pydantic.Field(
        default=None,
        max_length=2048,
        pattern=common.STORAGE_URI_PATTERN,
        description="The deployment's capture root (captured/ and labels/); none: the test split only.",
    )
    reviewed_s3: common.S3Connection | None = pydantic.Field(default=None, description="For s3://.")
    pvc_root: str = pydantic.Field(default="/mnt/mlops", description="Where pvc:// claims are mounted.")
    secrets_root: str = pydantic.Field(
        default=workload.SECRETS_DIR, description="Where Secrets are mounted: <root>/s3/<secret>/<key>."
    )
    staging_dir: str = pydantic.Field(
        default=workload.STAGING_DIR, description="Where s3:// inputs are downloaded to."
    )
