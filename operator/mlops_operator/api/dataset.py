"""The Dataset kind: where data comes from, what it must look like, how it is cleaned and split.

A Dataset is the first link of the typed chain (Dataset → TrainingJob → ModelDeployment):
its status names a digest and the URI of an immutable, versioned directory that later
resources read. The spec is also the configuration of the prepare workload
(:class:`PrepareConfig` wraps it), so the operator and the pod validate the very same
model, and :meth:`DatasetSpec.preparation` says which parts of it the digest covers.

Cross-field rules are CEL (checked by the apiserver before the operator sees a spec);
everything that depends on the data itself (do the declared columns exist? is a class too
small to stratify?) can only be checked by the workload and comes back as a Failed reason.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

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
        "the same columns (data collected from several places).",
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
    storage: str = pydantic.Field(
        pattern=common.STORAGE_URI_PATTERN,
        max_length=2048,
        description="Where versions are written: pvc://<claim>/<path> or file:///<path>. Each version is "
        "the directory <storage>/<digest>/.",
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
        """The part of the spec the digest covers: what decides the prepared data, not where it goes."""
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
        ),
        description="A data set collected from one or more sources, validated against a schema, cleaned, "
        "split into train/validation/test and stored as a version named by its digest.",
    )

    spec: DatasetSpec
    status: DatasetStatus = DatasetStatus()


class PrepareConfig(common.ApiModel):
    """The prepare workload's configuration (MLOPS_CONFIG_FILE): the spec plus where things are mounted."""

    dataset: str = pydantic.Field(min_length=1, max_length=253, description="The Dataset's name.")
    namespace: str = pydantic.Field(default="default", max_length=63, description="The Dataset's namespace.")
    spec: DatasetSpec = pydantic.Field(description="The Dataset's spec.")
    pvc_root: str = pydantic.Field(
        default="/mnt/mlops", description="Where claims are mounted: <root>/pvc/<claim>."
    )
    config_map_root: str = pydantic.Field(
        default="/etc/mlops/sources",
        description="Where ConfigMap sources are mounted: <root>/<source index>/<key>.",
    )
