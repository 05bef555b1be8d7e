"""The Dataset kind: where data comes from, what it must look like, how it is cleaned and split.

A Dataset is the first link of the typed chain (Dataset → TrainingJob → ModelDeployment):
its status names a digest and the URI of an immutable, versioned directory that later
resources read. The spec is also the configuration of the prepare workload
(:class:`PrepareConfig` wraps it), so the operator and the pod validate the very same
model, and :meth:`DatasetSpec.preparation` says which parts of it the digest covers.

``spec.refresh`` re-reads the sources on a cron schedule (or when the ``mlops.dev/refresh``
annotation changes); ``status.versions`` keeps the last ``spec.retention.keepVersions``
versions, and the prepare pod deletes older version directories, so a TrainingJob may pin any
version the status lists.

Cross-field rules are CEL (checked by the apiserver before the operator sees a spec);
everything that depends on the data itself (do the declared columns exist? is a class too
small to stratify?) can only be checked by the workload and comes back as a Failed reason.
"""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any, ClassVar, Literal

import croniter
import pydantic

from mlops_operator.api import common, dataset_sources

Task = dataset_sources.Task
FileFormat = dataset_sources.FileFormat
Source = dataset_sources.Source
ColumnType = Literal["float", "int", "category", "bool", "string"]
ImputeStrategy = Literal["drop", "mean", "median", "most_frequent", "constant"]
Phase = Literal["Pending", "Preparing", "Ready", "Failed"]

COLUMN_NAME_MAX = 253

# Bounds of the lists the status carries (etcd objects stay small; report.json has it all).
STATUS_MISSING_MAX = 20
STATUS_CLASSES_MAX = 20
STATUS_WARNINGS_MAX = 10
WARNING_LENGTH_MAX = 300

# Refresh and versions. Any new value of the annotation (``now``, a timestamp) asks for one
# re-read of the sources; the value handled is kept in status.lastRefreshRequest.
REFRESH_ANNOTATION = "mlops.dev/refresh"
REFRESH_REQUEST_MAX = 256
VERSIONS_MAX = 50
# Five cron fields (minute hour day-of-month month day-of-week) or a macro, as CronJob takes them.
CRON_MACROS = ("yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly")
CRON_PATTERN = r"^(@(" + "|".join(CRON_MACROS) + r")|[0-9A-Za-z*?,/-]+( +[0-9A-Za-z*?,/-]+){4})$"
TIME_ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"
DIGEST_PATTERN = r"^[0-9a-f]{64}$"


_rules = dataset_sources.rules


# ---------------------------------------------------------------------------------------------
# Schema, cleaning, features, split
# ---------------------------------------------------------------------------------------------


class ColumnSpec(common.ApiModel):
    """A declared column: its type and the constraints each value must meet."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=_rules(
            {
                "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
                "message": "column min must not exceed max",
                "fieldPath": ".min",
            },
            {
                "rule": "(!has(self.min) && !has(self.max)) || self.type in ['float', 'int']",
                "message": "min and max apply to float and int columns only",
                "fieldPath": ".type",
            },
            {
                "rule": "!has(self.allowed) || self.type in ['category', 'string']",
                "message": "allowed applies to category and string columns only",
                "fieldPath": ".allowed",
            },
        )
    )

    name: str = pydantic.Field(min_length=1, max_length=COLUMN_NAME_MAX, description="Column name.")
    type: ColumnType = pydantic.Field(
        description="float, int, bool, category (encoded as a feature) or string (free text or an "
        "identifier: kept in the splits, not fed to the model)."
    )
    required: bool = pydantic.Field(
        default=False, description="A missing value in this column is a violation (see onViolation)."
    )
    min: float | None = pydantic.Field(default=None, description="Smallest allowed value (float/int).")
    max: float | None = pydantic.Field(default=None, description="Largest allowed value (float/int).")
    allowed: list[pydantic.constr(max_length=256)] | None = pydantic.Field(  # type: ignore[valid-type]
        default=None, max_length=1000, description="The only values allowed (category/string)."
    )


class DatasetSchema(common.ApiModel):
    """What the data must look like. Undeclared columns are kept and their types inferred."""

    columns: list[ColumnSpec] = pydantic.Field(
        default_factory=list,
        max_length=512,
        description="Declared columns; values are converted to the declared type, and a value that "
        "cannot be converted is a violation.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    target: str = pydantic.Field(
        default="target", min_length=1, max_length=COLUMN_NAME_MAX, description="The column to predict."
    )
    task: Task | None = pydantic.Field(
        default=None,
        description="classification or regression. Inferred when absent: from the source for sklearn "
        "and synthetic data, otherwise from the target column (text, bool, or at most 20 distinct "
        "integer values → classification).",
    )
    exclude: list[pydantic.constr(min_length=1, max_length=COLUMN_NAME_MAX)] = pydantic.Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=512,
        description="Columns removed right after loading (identifiers, leaky or irrelevant columns).",
    )
    on_violation: Literal["fail", "drop"] = pydantic.Field(
        default="fail",
        description="fail: any violating row fails the Dataset (reason SchemaViolation). "
        "drop: violating rows are removed and counted in status.dropped.violations.",
    )


class ColumnImputation(common.ApiModel):
    """The imputation of one column, overriding the default."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=_rules(
            {
                "rule": "self.strategy != 'constant' || has(self.fillValue)",
                "message": "strategy constant needs fillValue",
                "fieldPath": ".fillValue",
            }
        )
    )

    name: str = pydantic.Field(min_length=1, max_length=COLUMN_NAME_MAX, description="Column name.")
    strategy: ImputeStrategy = pydantic.Field(
        description="drop (remove rows missing this column), mean, median (numeric columns), "
        "most_frequent, constant."
    )
    fill_value: str | None = pydantic.Field(
        default=None,
        max_length=256,
        description='The value for strategy constant, as a string (quote numbers: "0").',
    )

    @pydantic.model_validator(mode="after")
    def _fill(self) -> ColumnImputation:
        if self.strategy == "constant" and self.fill_value is None:
            raise ValueError(f"imputation of column {self.name!r}: strategy constant needs fillValue")
        return self


class Imputation(common.ApiModel):
    """How missing feature values are filled. Rows missing the target are always dropped."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=_rules(
            {
                "rule": "self.strategy != 'constant' || has(self.fillValue)",
                "message": "strategy constant needs fillValue",
                "fieldPath": ".fillValue",
            }
        )
    )

    strategy: ImputeStrategy = pydantic.Field(
        default="median",
        description="Default for every feature column: drop removes rows with a missing value; mean and "
        "median apply to numeric columns (categorical columns use most_frequent instead); "
        "most_frequent; constant (fillValue). Imputers are part of the saved preprocessor, fitted on "
        "the train split, so serving fills missing values the same way.",
    )
    fill_value: str | None = pydantic.Field(
        default=None, max_length=256, description="The value for strategy constant, as a string."
    )
    columns: list[ColumnImputation] = pydantic.Field(
        default_factory=list,
        max_length=512,
        description="Per-column strategies overriding the default.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @pydantic.model_validator(mode="after")
    def _fill(self) -> Imputation:
        if self.strategy == "constant" and self.fill_value is None:
            raise ValueError("imputation: strategy constant needs fillValue")
        return self

    def for_column(self, name: str) -> tuple[ImputeStrategy, str | None, bool]:
        """(strategy, fill value, explicitly set for this column) of one column."""
        for rule in self.columns:
            if rule.name == name:
                return rule.strategy, rule.fill_value, True
        return self.strategy, self.fill_value, False


class Cleaning(common.ApiModel):
    """Row-level cleaning applied before splitting."""

    drop_duplicates: bool = pydantic.Field(
        default=True, description="Remove exact duplicate rows (counted in status.duplicatesRemoved)."
    )
    imputation: Imputation = pydantic.Field(default_factory=Imputation, description="Missing values.")


class Selection(common.ApiModel):
    """Feature selection after encoding and scaling, fitted on the train split."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=_rules(
            {
                "rule": "has(self.kBest) || has(self.varianceThreshold)",
                "message": "features.selection needs kBest or varianceThreshold",
            }
        )
    )

    k_best: int | None = pydantic.Field(
        default=None, ge=1, le=100_000, description="Keep the k features with the best univariate F-score."
    )
    variance_threshold: float | None = pydantic.Field(
        default=None, ge=0, description="Drop features whose train-split variance is at most this."
    )


class Features(common.ApiModel):
    """The preprocessing pipeline saved with the data (preprocessor.skops) and reused by serving."""

    scaling: Literal["standard", "minmax", "none"] = pydantic.Field(
        default="standard", description="Scaling of numeric columns."
    )
    encoding: Literal["onehot", "ordinal"] = pydantic.Field(
        default="onehot",
        description="Encoding of category columns; unseen categories become all zeros (onehot) "
        "or -1 (ordinal).",
    )
    max_categories: int | None = pydantic.Field(
        default=None,
        ge=2,
        le=10_000,
        description="onehot: at most this many output columns per feature; rarer values share one.",
    )
    selection: Selection | None = pydantic.Field(default=None, description="Optional feature selection.")


class Split(common.ApiModel):
    """Train/validation/test fractions; deterministic for a given seed and data."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=_rules(
            {
                "rule": "self.train + self.validation + self.test >= 0.999999 && "
                "self.train + self.validation + self.test <= 1.000001",
                "message": "spec.split: train + validation + test must sum to 1",
            }
        )
    )

    train: float = pydantic.Field(default=0.7, gt=0, le=1, description="Fraction of rows for training.")
    validation: float = pydantic.Field(default=0.15, ge=0, lt=1, description="Fraction for validation.")
    test: float = pydantic.Field(default=0.15, ge=0, lt=1, description="Fraction for the final test.")
    stratify: bool | None = pydantic.Field(
        default=None,
        description="Keep class proportions in every split. Defaults to true for classification. Refused "
        "at admission for a regression target the spec decides (schema.task, a bundled or synthetic "
        "regression source); ignored with a warning when the rows turn out to be regression.",
    )
    seed: int = pydantic.Field(default=42, ge=0, le=2**31 - 1, description="Random seed of the split.")

    @pydantic.model_validator(mode="after")
    def _sums_to_one(self) -> Split:
        if abs(self.train + self.validation + self.test - 1.0) > 1e-6:
            raise ValueError("spec.split: train + validation + test must sum to 1")
        return self


# ---------------------------------------------------------------------------------------------
# Refresh and retention
# ---------------------------------------------------------------------------------------------


class Refresh(common.ApiModel):
    """When the sources are read again. A changed digest makes a new version; an unchanged one
    only moves status.lastChecked. ``kubectl annotate dataset <name> mlops.dev/refresh=now``
    (any new value) asks for one re-read at once."""

    schedule: str = pydantic.Field(
        max_length=128,
        pattern=CRON_PATTERN,
        description="A cron schedule of five fields (minute hour day-of-month month day-of-week), "
        'e.g. "0 * * * *", or @hourly, @daily, @weekly, @monthly, @yearly. The first time after the '
        "last read (status.lastChecked) starts the next read; times that pass while a preparation "
        "runs are skipped, not caught up (as CronJob's concurrencyPolicy: Forbid).",
    )
    time_zone: str | None = pydantic.Field(
        default=None,
        max_length=64,
        pattern=TIME_ZONE_PATTERN,
        description="The IANA time zone the schedule is read in, e.g. Europe/Berlin (as CronJob's "
        "spec.timeZone); default UTC.",
    )

    @pydantic.field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        fields = value.split()
        if not value.startswith("@") and len(fields) != 5:
            raise ValueError(
                f"spec.refresh.schedule {value!r} must have five fields (minute hour day-of-month month "
                "day-of-week) or be a macro such as @daily"
            )
        if value.startswith("@") and value[1:] not in CRON_MACROS:
            raise ValueError(f"spec.refresh.schedule {value!r}: macros are @{', @'.join(CRON_MACROS)}")
        if not croniter.croniter.is_valid(value):
            raise ValueError(f"spec.refresh.schedule {value!r} is not a valid cron expression")
        return value

    @pydantic.field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"spec.refresh.timeZone {value!r} is not an IANA time zone (e.g. Europe/Berlin)"
            ) from exc
        return value

    def next_after(self, moment: datetime.datetime) -> datetime.datetime:
        """The first scheduled time strictly after ``moment`` (aware, UTC)."""
        zone: datetime.tzinfo = zoneinfo.ZoneInfo(self.time_zone) if self.time_zone else datetime.UTC
        local = moment.astimezone(zone)
        nxt = croniter.croniter(self.schedule, local).get_next(datetime.datetime)
        return nxt.astimezone(datetime.UTC)


class Retention(common.ApiModel):
    """How many versions stay listed in status.versions and stored under spec.storage."""

    keep_versions: int = pydantic.Field(
        default=5,
        ge=1,
        le=VERSIONS_MAX,
        description="Versions kept, newest first, the current one included. When a preparation makes "
        "a new version, the prepare pod deletes the older version directories beyond this many "
        "(only complete <storage>/<digest>/ directories whose manifest names this Dataset, never "
        "anything else under spec.storage). Lowering it trims status.versions at once and storage "
        "at the next preparation.",
    )


class Scale(common.ApiModel):
    """When the prepare pod streams the data instead of loading it whole, and how.

    Small data is prepared in memory. File sources (CSV or Parquet files, or directories of
    them) holding more rows than ``inMemoryRows`` are streamed in batches instead, so the pod
    needs memory for one batch, the sample and a 16-byte hash per row rather than for the
    whole table. The streamed result is the in-memory one (same cleaning, same exact split,
    same counts) except that the preprocessor, the drift baseline's bins and the leakage
    checks are fitted on a sample of ``sampleRows`` rows. When the sample holds every row, the
    two paths give the same version (same digest); when it does not, ``sampleRows`` is part
    of the digest. ``inMemoryRows`` and ``batchRows`` only decide how the work is done, never
    what it gives, so they are not.
    """

    in_memory_rows: int = pydantic.Field(
        default=1_000_000,
        ge=1,
        description="Prepare in memory up to this many input rows; stream above it. Parquet row counts "
        "come from the file footers, a CSV file's from its line count. Only file sources stream (a "
        "directory of files always does); other sources are always read whole.",
    )
    sample_rows: int = pydantic.Field(
        default=200_000,
        ge=1000,
        le=10_000_000,
        description="When streaming: the rows of the train split on which the preprocessor (imputers, "
        "scalers, the encoders' categories), the drift baseline's bins and the leakage checks are "
        "fitted, a uniform sample chosen by the split seed. Counts, missing values, class balance, "
        "duplicates, means and the split itself stay exact.",
    )
    batch_rows: int = pydantic.Field(
        default=131_072,
        ge=1024,
        le=4_194_304,
        description="When streaming: rows per batch read from the files. Larger batches are faster "
        "and use more memory; the result does not depend on it.",
    )


# ---------------------------------------------------------------------------------------------
# Spec and status
# ---------------------------------------------------------------------------------------------


# The sources whose task is known before any row is read (a regression target cannot be stratified).
_REGRESSION_SOURCE_CEL = (
    "(has(s.sklearn) && s.sklearn.name in "
    + repr(sorted(n for n, t in dataset_sources.SKLEARN_TASKS.items() if t == "regression"))
    + ") || (has(s.synthetic) && has(s.synthetic.task) && s.synthetic.task == 'regression')"
)


class DatasetSpec(common.ApiModel):
    """What to prepare and where to put it."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=_rules(
            {
                "rule": "!has(self.split) || !has(self.split.stratify) || !self.split.stratify || "
                "(has(self.schema) && has(self.schema.task) ? self.schema.task != 'regression' : "
                f"!self.sources.all(s, {_REGRESSION_SOURCE_CEL}))",
                "message": "spec.split.stratify: a regression target cannot be stratified (stratify keeps "
                "class proportions); remove it or declare schema.task: classification",
                "fieldPath": ".split.stratify",
            }
        )
    )

    sources: list[dataset_sources.Source] = pydantic.Field(
        min_length=1,
        max_length=16,
        description="Where the rows come from. Several sources are concatenated in order and must have "
        "the same columns (data collected from several places); a feedback source lacking a column "
        "the others have gets it empty when schema.exclude removes it anyway.",
    )
    data_schema: DatasetSchema = pydantic.Field(
        default_factory=DatasetSchema,
        alias="schema",
        description="Declared columns, target, task and the violation policy.",
    )
    cleaning: Cleaning = pydantic.Field(
        default_factory=Cleaning, description="Duplicates and missing values."
    )
    features: Features = pydantic.Field(default_factory=Features, description="Scaling, encoding, selection.")
    split: Split = pydantic.Field(default_factory=Split, description="Train/validation/test split.")
    scale: Scale = pydantic.Field(
        default_factory=Scale,
        description="Data larger than the pod's memory: when to stream the sources and on how large a "
        "sample the preprocessor is fitted.",
    )
    storage: str = pydantic.Field(
        pattern=common.STORAGE_URI_PATTERN,
        max_length=2048,
        description="Where versions are written: pvc://<claim>/<path>, file:///<path> or "
        "s3://<bucket>/<prefix>. Each version is the directory <storage>/<digest>/.",
    )
    s3: common.S3Connection | None = pydantic.Field(
        default=None,
        description="How the pods reach s3:// sources and storage: endpoint, region and a credentials "
        "Secret (empty: AWS S3 with the pod's own identity). TrainingJobs reading this Dataset's "
        "versions use it too.",
    )
    resources: common.Resources = pydantic.Field(
        default_factory=common.Resources, description="CPU and memory of the prepare pod."
    )
    active_deadline_seconds: int = pydantic.Field(
        default=3600, ge=1, le=7 * 86400, description="The prepare Job fails after this many seconds."
    )
    backoff_limit: int = pydantic.Field(
        default=2,
        ge=0,
        le=20,
        description="Retries of the prepare pod after a transient failure. Data errors (bad checksum, "
        "schema mismatch, ...) are not retried.",
    )
    node_selector: dict[str, str] | None = pydantic.Field(
        default=None,
        description="Node labels the prepare pod must match (merged with the GPU selector), e.g. to run "
        "it where a local volume lives.",
        json_schema_extra={"maxProperties": 32},
    )
    tolerations: list[common.Toleration] | None = pydantic.Field(
        default=None,
        max_length=32,
        description="Tolerations of the prepare pod (merged with the GPU toleration).",
    )
    refresh: Refresh | None = pydantic.Field(
        default=None,
        description="Read the sources again on a cron schedule; without it the sources are read once "
        "per spec (and whenever the mlops.dev/refresh annotation gets a new value).",
    )
    retention: Retention = pydantic.Field(
        default_factory=Retention, description="How many versions are kept in status and storage."
    )

    def known_task(self) -> dataset_sources.Task | None:
        """The task when the spec alone decides it: declared, or every source's own (sklearn, synthetic)."""
        if self.data_schema.task is not None:
            return self.data_schema.task
        tasks = {source.known_task() for source in self.sources}
        return tasks.pop() if len(tasks) == 1 else None

    @pydantic.model_validator(mode="after")
    def _stratify_needs_classes(self) -> DatasetSpec:
        if self.split.stratify and self.known_task() == "regression":
            raise ValueError(
                "spec.split.stratify: a regression target cannot be stratified (stratify keeps class "
                "proportions); remove it or declare schema.task: classification"
            )
        return self

    def preparation(self) -> dict[str, Any]:
        """The part of the spec the digest covers: what decides the prepared data, not where it goes.

        ``scale`` is not in it: a streamed version whose preprocessor was fitted on a sample adds
        ``scale.sampleRows`` itself (see :class:`Scale`), so in-memory digests never change.
        """
        wire = self.to_api()
        return {
            key: wire[key] for key in ("sources", "schema", "cleaning", "features", "split") if key in wire
        }


class RowCounts(common.ApiModel):
    """Row counts of the latest preparation."""

    input: int = pydantic.Field(default=0, ge=0, description="Rows read from all sources.")
    output: int = pydantic.Field(default=0, ge=0, description="Rows kept after validation and cleaning.")
    dropped: int = pydantic.Field(default=0, ge=0, description="Rows removed (see status.dropped).")
    train: int = pydantic.Field(default=0, ge=0, description="Rows in the train split.")
    validation: int = pydantic.Field(default=0, ge=0, description="Rows in the validation split.")
    test: int = pydantic.Field(default=0, ge=0, description="Rows in the test split.")


class DroppedRows(common.ApiModel):
    """Why rows were removed (each row is counted once, at the first step that removed it)."""

    violations: int = pydantic.Field(
        default=0, ge=0, description="Rows violating the schema (onViolation: drop)."
    )
    missing_target: int = pydantic.Field(default=0, ge=0, description="Rows without a target value.")
    duplicates: int = pydantic.Field(default=0, ge=0, description="Exact duplicates of an earlier row.")
    missing_values: int = pydantic.Field(
        default=0, ge=0, description="Rows with a missing value in a column whose imputation is drop."
    )


class ColumnCount(common.ApiModel):
    """A per-column count."""

    name: str = pydantic.Field(max_length=COLUMN_NAME_MAX, description="Column name.")
    count: int = pydantic.Field(ge=0, description="Count.")


class ClassShare(common.ApiModel):
    """How many kept rows a class has."""

    name: str = pydantic.Field(max_length=256, description="The class label (as text).")
    count: int = pydantic.Field(ge=0, description="Rows.")
    fraction: float = pydantic.Field(ge=0, le=1, description="Share of the kept rows.")


class DatasetVersion(common.ApiModel):
    """One kept version: its digest, where it is, how many rows it has and when it was made."""

    digest: str = pydantic.Field(max_length=128, description="Content hash (sha256, hex).")
    digest_short: str | None = pydantic.Field(
        default=None, max_length=16, description="The first 12 characters of the digest."
    )
    storage_uri: str | None = pydantic.Field(
        default=None, max_length=4096, description="The version's directory."
    )
    rows: RowCounts | None = pydantic.Field(default=None, description="Row counts.")
    created: str | None = pydantic.Field(
        default=None, description="When a preparation last produced this version (RFC 3339)."
    )
    job: str | None = pydantic.Field(
        default=None, max_length=63, description="The prepare Job that produced it."
    )
    spec_hash: str | None = pydantic.Field(
        default=None, max_length=32, description="Hash of the Dataset spec it was prepared for."
    )


class DatasetStatus(common.StatusBase):
    """Observed state of a Dataset: the latest prepared version and its validation summary."""

    phase: Phase | None = pydantic.Field(default=None, description="Pending, Preparing, Ready or Failed.")
    digest: str | None = pydantic.Field(
        default=None,
        max_length=128,
        description="Content hash (sha256, hex) of the latest prepared version: its splits plus the "
        "preparation spec. Kept while a new version is being prepared.",
    )
    digest_short: str | None = pydantic.Field(
        default=None, max_length=16, description="The first 12 characters of the digest."
    )
    storage_uri: str | None = pydantic.Field(
        default=None, max_length=4096, description="URI of the latest version's directory."
    )
    task: Task | None = pydantic.Field(default=None, description="classification or regression.")
    target: str | None = pydantic.Field(
        default=None, max_length=COLUMN_NAME_MAX, description="Target column."
    )
    rows: RowCounts | None = pydantic.Field(default=None, description="Row counts.")
    dropped: DroppedRows | None = pydantic.Field(default=None, description="Why rows were removed.")
    duplicates_removed: int | None = pydantic.Field(default=None, ge=0, description="Duplicate rows removed.")
    columns: int | None = pydantic.Field(default=None, ge=0, description="Feature columns (target excluded).")
    features: int | None = pydantic.Field(
        default=None, ge=0, description="Columns the preprocessor outputs (after encoding and selection)."
    )
    classes: int | None = pydantic.Field(
        default=None, ge=0, description="Number of classes (classification)."
    )
    missing: list[ColumnCount] = pydantic.Field(
        default_factory=list,
        max_length=STATUS_MISSING_MAX,
        description=f"Missing values per column in the input, the {STATUS_MISSING_MAX} largest counts.",
    )
    class_balance: list[ClassShare] = pydantic.Field(
        default_factory=list,
        max_length=STATUS_CLASSES_MAX,
        description=f"Rows per class after cleaning, the {STATUS_CLASSES_MAX} largest classes.",
    )
    warnings: list[pydantic.constr(max_length=WARNING_LENGTH_MAX)] = pydantic.Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=STATUS_WARNINGS_MAX,
        description="Data-quality warnings: severe imbalance, constant columns, target leakage, ...",
    )
    job_name: str | None = pydantic.Field(default=None, max_length=63, description="The current prepare Job.")
    start_time: str | None = pydantic.Field(default=None, description="When the current preparation started.")
    completion_time: str | None = pydantic.Field(default=None, description="When it finished.")
    reason: str | None = pydantic.Field(
        default=None, max_length=128, description="Why the phase is what it is."
    )
    message: str | None = pydantic.Field(default=None, max_length=4096, description="What to do about it.")
    versions: list[DatasetVersion] = pydantic.Field(
        default_factory=list,
        max_length=VERSIONS_MAX,
        description="The kept versions, newest first (at most spec.retention.keepVersions); the first "
        "is the one served (digest, storageUri). TrainingJobs may pin any of them "
        "(datasetRef.version).",
    )
    last_checked: str | None = pydantic.Field(
        default=None,
        description="When the sources were last read (the end of the latest preparation), whatever "
        "the outcome.",
    )
    next_check: str | None = pydantic.Field(
        default=None, description="When spec.refresh.schedule reads the sources next (RFC 3339)."
    )
    last_refresh_request: str | None = pydantic.Field(
        default=None,
        max_length=REFRESH_REQUEST_MAX,
        description=f"The value of the {REFRESH_ANNOTATION} annotation last acted on.",
    )
    refresh_round: int | None = pydantic.Field(
        default=None,
        ge=0,
        description="How many times the sources were read again for the current spec (a new value names "
        "a new prepare Job); 0 for the first preparation.",
    )


class Dataset(common.Resource):
    """Collects, validates, cleans, splits and versions a data set."""

    crd: ClassVar[common.CRDMeta] = common.CRDMeta(
        kind="Dataset",
        plural="datasets",
        singular="dataset",
        short_names=("dset",),  # "ds" is DaemonSet's: kubectl would resolve it there
        printer_columns=(
            common.PrinterColumn(name="Phase", json_path=".status.phase"),
            common.PrinterColumn(name="Rows", json_path=".status.rows.output", type="integer"),
            common.PrinterColumn(name="Digest", json_path=".status.digestShort"),
            common.PrinterColumn(name="Reason", json_path=".status.reason", priority=1),
            common.PrinterColumn(name="Storage", json_path=".status.storageUri", priority=1),
            common.PrinterColumn(
                name="Checked",
                json_path=".status.lastChecked",
                type="date",
                description="When the sources were last read.",
                priority=1,
            ),
        ),
        description="A data set collected from one or more sources, validated against a schema, cleaned, "
        "split into train/validation/test and stored as a version named by its digest.",
    )

    spec: DatasetSpec
    status: DatasetStatus = DatasetStatus()


class FeedbackStore(common.ApiModel):
    """Where one feedback source's rows are, as the operator resolved its ModelDeployment."""

    source: int = pydantic.Field(ge=0, lt=16, description="The index of the source in spec.sources.")
    model_deployment: str = pydantic.Field(
        min_length=1, max_length=253, description="The ModelDeployment the source names."
    )
    uri: str = pydantic.Field(
        pattern=common.STORAGE_URI_PATTERN,
        max_length=4096,
        description="The deployment's capture root, <logging.storageUri>/<namespace>/<name> "
        "(captured/ and labels/ under it).",
    )
    s3: common.S3Connection | None = pydantic.Field(
        default=None, description="The deployment's logging.s3: how to reach an s3:// root."
    )


class PrepareConfig(common.ApiModel):
    """The prepare workload's configuration (MLOPS_CONFIG_FILE): the spec plus where things are mounted."""

    dataset: str = pydantic.Field(min_length=1, max_length=253, description="The Dataset's name.")
    namespace: str = pydantic.Field(default="default", max_length=63, description="The Dataset's namespace.")
    spec: DatasetSpec = pydantic.Field(description="The Dataset's spec.")
    retain: list[pydantic.constr(max_length=128)] = pydantic.Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=VERSIONS_MAX,
        description="The digests status.versions lists, newest first. After writing its version the "
        "workload deletes the other complete version directories under spec.storage, except these "
        "(all of them when its digest is among them, else the first keepVersions - 1); empty: "
        "nothing is deleted.",
    )
    pvc_root: str = pydantic.Field(
        default="/mnt/mlops", description="Where claims are mounted: <root>/pvc/<claim>."
    )
    config_map_root: str = pydantic.Field(
        default="/etc/mlops/sources",
        description="Where ConfigMap sources are mounted: <root>/<source index>/<key>.",
    )
    secrets_root: str = pydantic.Field(
        default="/var/run/secrets/mlops.dev",
        description="Where Secrets are mounted: <root>/sources/<source index>/<key> for SQL sources.",
    )
    feedback: list[FeedbackStore] | None = pydantic.Field(
        default=None,
        max_length=16,
        description="The resolved capture root of each feedback source (absent without any).",
    )

    def feedback_store(self, index: int) -> FeedbackStore | None:
        """The resolved store of source ``index`` (a feedback source), None when not resolved."""
        return next((f for f in self.feedback or [] if f.source == index), None)
