"""Where a Dataset's rows come from: the seven source kinds and the "exactly one" rule.

Split from ``dataset`` (the kind) to keep modules small; the prepare workload reads these
models through ``PrepareConfig`` and each kind's loader lives in
``mlops_workloads.prepare.sources``.
"""

from __future__ import annotations

import datetime
from typing import Any, Literal

import pydantic

from mlops_operator.api import common

Task = Literal["classification", "regression"]
FileFormat = Literal["csv", "parquet"]
SklearnName = Literal["iris", "wine", "breast_cancer", "digits", "diabetes"]
SKLEARN_TASKS: dict[str, Task] = {
    "iris": "classification",
    "wine": "classification",
    "breast_cancer": "classification",
    "digits": "classification",
    "diabetes": "regression",
}

CONFIGMAP_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
HTTP_URL_PATTERN = r"^https?://[^\s/$.?#][^\s]*$"
SHA256_PATTERN = r"^[a-fA-F0-9]{64}$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# The Source fields, one per kind (python names; configMap on the wire).
SOURCE_KINDS = ("sklearn", "synthetic", "file", "config_map", "http", "sql", "feedback")
EXACTLY_ONE_MESSAGE = (
    "each entry of spec.sources must set exactly one of sklearn, synthetic, file, configMap, http or sql, "
    "or feedback"
)
FeedbackInclude = Literal["lowConfidence", "all"]
# RFC 3339 with a zone (Z or an offset), as Kubernetes writes times; fractions of a second allowed.
RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
)


def rules(*items: dict[str, str]) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules."""
    return {"x-kubernetes-validations": list(items)}


class SklearnSource(common.ApiModel):
    """One of scikit-learn's bundled datasets (no download needed)."""

    name: SklearnName = pydantic.Field(
        description="iris, wine, breast_cancer and digits are classification; diabetes is regression. "
        "The target column is called 'target'."
    )


class SyntheticSource(common.ApiModel):
    """Generated data (scikit-learn's make_classification / make_regression), reproducible by seed."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=rules(
            {
                "rule": "!has(self.informative) || self.informative <= self.features",
                "message": "synthetic.informative must not exceed synthetic.features",
                "fieldPath": ".informative",
            },
            {
                "rule": "self.task != 'classification' || "
                "(has(self.informative) ? self.informative : self.features) >= 7 || "
                "self.classes <= [1, 2, 4, 8, 16, 32, 64][has(self.informative) ? self.informative "
                ": self.features]",
                "message": "synthetic.classes must be at most 2^informative (one cluster per class)",
                "fieldPath": ".classes",
            },
            {
                "rule": "!has(self.weights) || size(self.weights) == self.classes",
                "message": "synthetic.weights must have one entry per class (synthetic.classes)",
                "fieldPath": ".weights",
            },
            {
                "rule": "self.task != 'classification' || self.noise <= 1.0",
                "message": "synthetic.noise is the fraction of flipped labels for classification: at most 1",
                "fieldPath": ".noise",
            },
        )
    )

    task: Task = pydantic.Field(default="classification", description="classification or regression.")
    samples: int = pydantic.Field(ge=10, le=50_000_000, description="Number of rows to generate.")
    features: int = pydantic.Field(default=10, ge=1, le=1000, description="Number of feature columns.")
    informative: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=1000,
        description="Number of informative features (the rest is noise). Defaults to all features.",
    )
    classes: int = pydantic.Field(default=2, ge=2, le=100, description="Number of classes (classification).")
    weights: list[pydantic.confloat(ge=0, le=1)] | None = pydantic.Field(  # type: ignore[valid-type]
        default=None,
        max_length=100,
        description="Class proportions, one per class (classification), e.g. [0.9, 0.1] for an "
        "imbalanced set. Defaults to balanced classes.",
    )
    noise: float = pydantic.Field(
        default=0.0,
        ge=0,
        le=1_000_000,
        description="Classification: fraction of labels flipped at random (0..1). "
        "Regression: standard deviation of Gaussian noise added to the target.",
    )
    seed: int = pydantic.Field(default=0, ge=0, le=2**31 - 1, description="Random seed.")

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> SyntheticSource:
        informative = self.informative or self.features
        if informative > self.features:
            raise ValueError("synthetic.informative must not exceed synthetic.features")
        if self.task == "classification":
            if informative < 7 and self.classes > 2**informative:
                raise ValueError("synthetic.classes must be at most 2^informative (one cluster per class)")
            if self.weights is not None and len(self.weights) != self.classes:
                raise ValueError("synthetic.weights must have one entry per class (synthetic.classes)")
            if self.noise > 1:
                raise ValueError(
                    "synthetic.noise is the fraction of flipped labels for classification: at most 1"
                )
        return self


class FileSource(common.ApiModel):
    """A CSV or Parquet file on a PersistentVolumeClaim or on the node's disk."""

    uri: str = pydantic.Field(
        pattern=common.STORAGE_URI_PATTERN,
        max_length=2048,
        description="pvc://<claim>/<path>, file:///<path> or s3://<bucket>/<key>: one file, or a "
        "directory/prefix whose files (of the format, sorted by name; hidden and _-prefixed ones "
        "skipped) are read as one table. s3:// uses the Dataset's spec.s3.",
    )
    format: FileFormat | None = pydantic.Field(
        default=None,
        description="csv or parquet; inferred from the file extension when absent (csv otherwise).",
    )


class ConfigMapSource(common.ApiModel):
    """A small CSV kept inline in a ConfigMap of the Dataset's namespace (at most 1 MiB)."""

    name: str = pydantic.Field(
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description="Name of the ConfigMap.",
    )
    key: str = pydantic.Field(
        pattern=CONFIGMAP_KEY_PATTERN, max_length=253, description="Key whose value is the CSV text."
    )


class HttpSource(common.ApiModel):
    """A CSV or Parquet file downloaded over HTTP(S) by the prepare pod."""

    url: str = pydantic.Field(
        pattern=HTTP_URL_PATTERN, max_length=2048, description="http:// or https:// URL."
    )
    sha256: str | None = pydantic.Field(
        default=None,
        pattern=SHA256_PATTERN,
        description="Expected SHA-256 of the downloaded bytes (hex). When set, a mismatch fails the "
        "Dataset with reason ChecksumMismatch.",
    )
    format: FileFormat | None = pydantic.Field(
        default=None, description="csv or parquet; inferred from the URL path when absent (csv otherwise)."
    )
    timeout_seconds: int = pydantic.Field(
        default=300, ge=1, le=86400, description="Give up a download that takes longer than this."
    )


class SecretKeySelector(common.ApiModel):
    """One key of a Secret in the Dataset's namespace."""

    name: str = pydantic.Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN, description="Name of the Secret."
    )
    key: str = pydantic.Field(
        default="url",
        min_length=1,
        max_length=253,
        pattern=CONFIGMAP_KEY_PATTERN,
        description="The key whose value is used.",
    )


class SqlSource(common.ApiModel):
    """The rows one SQL query returns, read with SQLAlchemy by the prepare pod.

    The connection URL lives in a Secret that is mounted into the prepare pod only: the
    operator never reads it, and no message, log or status shows its password.
    """

    model_config = pydantic.ConfigDict(
        json_schema_extra=rules(
            {
                "rule": "self.query.matches(r'\\S')",
                "message": "sql.query must not be blank",
                "fieldPath": ".query",
            }
        )
    )

    connection_secret_ref: SecretKeySelector = pydantic.Field(
        description="The Secret key holding an SQLAlchemy URL, e.g. "
        "postgresql+psycopg://user:password@db.example:5432/sales (plain postgresql:// uses psycopg too) "
        "or sqlite:////data/sales.db. The prepare image has the PostgreSQL (psycopg 3) and SQLite "
        "drivers. A missing Secret or key fails the Dataset with reason SourceUnreadable."
    )
    query: str = pydantic.Field(
        min_length=1,
        max_length=65536,
        description="The query whose result is the source's table, e.g. SELECT * FROM sales.orders. It "
        "runs in a read-only transaction (on PostgreSQL and SQLite); its column names are the table's, "
        "and SQL types map to column types: integers to int, floating point and numeric/decimal to float, "
        "boolean to bool, dates and timestamps to datetime (kept, not encoded), text to text (inferred as "
        "category, string or numbers like CSV text). A query the database refuses fails the Dataset with "
        "reason QueryFailed and the database's own message.",
    )
    timeout_seconds: int = pydantic.Field(
        default=300,
        ge=1,
        le=86400,
        description="Give up connecting, or running the query and reading its rows, after this long "
        "(reasons ConnectionFailed and QueryTimeout).",
    )

    @pydantic.field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("sql.query must not be blank")
        return value


class FeedbackSource(common.ApiModel):
    """The rows a ModelDeployment captured (``spec.logging``), with the labels people gave them.

    The operator resolves the deployment (same namespace) to its capture root,
    ``<logging.storageUri>/<namespace>/<name>``, and mounts it read-only into the prepare pod
    (its ``logging.s3`` credentials for s3://). The source's columns are the model's input
    features under their original names plus the Dataset's target column (schema.target), so it
    concatenates with sources that have those columns; request ids, times, probabilities and
    the model's answer are left out. Rows come in capture order (time, request id, row), so the
    same captured and labelled files always give the same version; a new label gives a new
    digest on the next read (spec.refresh or the mlops.dev/refresh annotation). In a Dataset
    with other sources, a feedback source with no rows yet (nothing captured, or nothing
    confirmed or corrected) adds no rows, and a warning in status.warnings says so: the data is
    the other sources' alone until people label. A Dataset whose sources are all feedback
    sources fails with reason FeedbackEmpty instead.
    """

    model_deployment: str = pydantic.Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="The ModelDeployment (in the Dataset's namespace) whose captured rows are read; it "
        "must set spec.logging. Until it exists (and captures), the Dataset waits with reason "
        "FeedbackSourceMissing (or FeedbackNotCaptured) and is reconciled again on its resync.",
    )
    labelled: bool = pydantic.Field(
        default=True,
        description="true: only the rows whose latest review confirmed or corrected the model's answer, "
        "with that label as the target (skipped rows and rows not reviewed yet are left out). With no "
        "such row yet, the source adds no rows in a Dataset with other sources (a warning in "
        "status.warnings says so), and fails the preparation with reason FeedbackEmpty when all the "
        "sources are feedback sources. false: every captured row, its label as the target where it "
        "has one and an empty target otherwise; rows without a target are then dropped by cleaning "
        "like any row missing its target (status.dropped.missingTarget), so they count as input rows "
        "only.",
    )
    include: FeedbackInclude = pydantic.Field(
        default="all",
        description="all: every captured row (the sampled requests and the low-confidence rows). "
        "lowConfidence: only the rows the model answered with low confidence (the lowConfidence flag "
        "of the answer, whichever way the row was captured).",
    )
    since: str | None = pydantic.Field(
        default=None,
        max_length=64,
        pattern=RFC3339_PATTERN,
        description="Only rows captured at or after this time (RFC 3339, e.g. 2026-01-31T00:00:00Z).",
        json_schema_extra={"format": "date-time"},
    )

    @pydantic.field_validator("since")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None and common.parse_rfc3339(value) is None:
            raise ValueError(f"feedback.since {value!r} is not an RFC 3339 time, e.g. 2026-01-31T00:00:00Z")
        return value

    def since_time(self) -> datetime.datetime | None:
        """``since`` as an aware datetime (None without one)."""
        return common.parse_rfc3339(self.since)


class Source(common.ApiModel):
    """Where rows come from: exactly one of the fields below."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=rules(
            {
                "rule": "(has(self.sklearn) ? 1 : 0) + (has(self.synthetic) ? 1 : 0)"
                " + (has(self.file) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.http) ? 1 : 0)"
                " + (has(self.sql) ? 1 : 0) + (has(self.feedback) ? 1 : 0) == 1",
                "message": EXACTLY_ONE_MESSAGE,
            }
        )
    )

    sklearn: SklearnSource | None = pydantic.Field(
        default=None, description="A bundled scikit-learn dataset."
    )
    synthetic: SyntheticSource | None = pydantic.Field(default=None, description="Generated data.")
    file: FileSource | None = pydantic.Field(default=None, description="A CSV/Parquet file on a volume.")
    config_map: ConfigMapSource | None = pydantic.Field(
        default=None, description="Inline CSV in a ConfigMap."
    )
    http: HttpSource | None = pydantic.Field(default=None, description="A file downloaded over HTTP(S).")
    sql: SqlSource | None = pydantic.Field(
        default=None, description="The result of a SQL query (PostgreSQL, SQLite) read with SQLAlchemy."
    )
    feedback: FeedbackSource | None = pydantic.Field(
        default=None,
        description="The rows a ModelDeployment of this namespace captured, with their reviewed labels.",
    )

    def known_task(self) -> Task | None:
        """The task this source alone decides (bundled and synthetic data), None when the rows decide."""
        if self.sklearn is not None:
            return SKLEARN_TASKS[self.sklearn.name]
        if self.synthetic is not None:
            return self.synthetic.task
        return None

    def kind(self) -> str:
        for name in SOURCE_KINDS:
            if getattr(self, name) is not None:
                return name
        raise ValueError("a source sets none of sklearn, synthetic, file, configMap, http, sql, feedback")

    @pydantic.model_validator(mode="after")
    def _exactly_one(self) -> Source:
        count = sum(getattr(self, n) is not None for n in SOURCE_KINDS)
        if count != 1:
            raise ValueError(EXACTLY_ONE_MESSAGE)
        return self
