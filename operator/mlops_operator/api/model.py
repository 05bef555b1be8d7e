"""Model: a registry of trained model versions, with aliases (champion, challenger...) that move.

Why the shapes below:
- A version is a record of one trained model: where it is (``modelUri``), what made it (a
  TrainingJob that names the Model in ``spec.registerAs``, or the best trial of a sweep whose
  ``spec.promote.model`` names it), on which data (the Dataset digest) and how well it did.
  Each record lives in a ConfigMap of its own (``<model>-v<n>``, immutable, owned by the
  Model), not in the status: versions outlive the TrainingJobs and sweeps that produced them,
  the status stays bounded (``spec.statusVersions`` newest), and a status rewritten from
  scratch loses nothing.
- Aliases are names for versions that a ModelDeployment can serve (``champion``,
  ``challenger``). They move by the ``alias.mlops.dev/<alias>`` annotation (which ``mlops models
  alias`` sets), by a sweep's promotion, or by the Model's own ``promotion`` rule; never by the
  operator editing a user's spec (GitOps owns specs). Every move is kept in a bounded history:
  who moved it, when and why.
- Deleting a version is explicit: the label ``mlops.dev/version-deleted=true`` on its ConfigMap
  (``mlops models delete-version``) retires it; the record stays as a tombstone, so the source
  that made it is never registered again.
- With an MLflow tracking server configured (the operator's ``MLOPS_MLFLOW_TRACKING_URI``), each
  version is also an MLflow run and registered model version; ``status.mlflow`` remembers what
  was exported (bounded, like ``status.versions``) so a restart neither repeats nor loses it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import pydantic

from mlops_operator.api import common, trainingjob

ALIAS_ANNOTATION_PREFIX = "alias.mlops.dev/"
"""``alias.mlops.dev/<alias>: "<version>"`` on a Model moves the alias (kept outside kopf's own
``mlops.dev/`` prefix on purpose: kopf leaves that prefix out of what it compares for updates)."""
ALIAS_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LABEL_MODEL = "mlops.dev/model"
LABEL_VERSION = "mlops.dev/model-version"
LABEL_SOURCE = "mlops.dev/model-source"  # a hash of what produced the version (its identity)
LABEL_DELETED = "mlops.dev/version-deleted"  # "true": the version is retired (a tombstone)
RECORD_KEY = "version.json"
MAX_ALIASES = 32
MAX_ALIAS_HISTORY = 20
MAX_STATUS_VERSIONS = 100
CONDITION_MLFLOW = "MLflowExported"


class PromotionRule(common.ApiModel):
    """The operator's own rule: a new version takes the alias only when it beats the alias's version."""

    alias: str = pydantic.Field(
        default="champion",
        min_length=1,
        max_length=63,
        pattern=ALIAS_PATTERN,
        description="The alias the rule moves.",
    )
    metric: str = pydantic.Field(
        max_length=63,
        pattern=trainingjob.METRIC_NAME_PATTERN,
        description="The metric compared (its validation value; the objective when it is the objective "
        "metric). A version without it never takes the alias by this rule.",
    )
    direction: trainingjob.Direction = pydantic.Field(default="maximize", description="maximize or minimize.")
    min_improvement: float = pydantic.Field(
        default=0.0,
        ge=0,
        description="How much better than the alias's version a new one must be (absolute); 0: any "
        "strict improvement.",
    )


class ModelSpec(common.ApiModel):
    """A registered model: what the status lists and the rule that moves an alias by itself."""

    description: str | None = pydantic.Field(
        default=None, max_length=1024, description="What the model is for, for people."
    )
    status_versions: int = pydantic.Field(
        default=20,
        ge=1,
        le=MAX_STATUS_VERSIONS,
        description="How many of the newest versions status.versions lists (every version keeps its "
        "ConfigMap <model>-v<n> whatever this says).",
    )
    promotion: PromotionRule | None = pydantic.Field(
        default=None,
        description="Move an alias to a new version when it beats the alias's current version on a "
        "metric. Without it only the alias annotation and a sweep's promote.alias move aliases.",
    )


# --------------------------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------------------------


class VersionSource(common.ApiModel):
    """What produced a version."""

    kind: Literal["TrainingJob", "HyperparameterSweep"] = pydantic.Field(
        description="TrainingJob (spec.registerAs) or HyperparameterSweep (spec.promote.model)."
    )
    name: str = pydantic.Field(description="The TrainingJob or sweep.")
    trial: str | None = pydantic.Field(default=None, description="For a sweep: the trial's TrainingJob.")


class ModelVersion(common.ApiModel):
    """One version as the status lists it (the whole record is in the ConfigMap <model>-v<n>)."""

    version: int = pydantic.Field(ge=1, description="The version number (1, 2, ...; never reused).")
    model_uri: str | None = pydantic.Field(default=None, max_length=2048, description="The model directory.")
    model_s3: common.S3Connection | None = pydantic.Field(
        default=None, description="How pods reach an s3:// modelUri (never a credential)."
    )
    model_version: str | None = pydantic.Field(
        default=None, max_length=128, description="The model's content id, when the run reported one."
    )
    source: VersionSource = pydantic.Field(description="What produced it.")
    dataset_digest: str | None = pydantic.Field(
        default=None, max_length=128, description="The Dataset version it was trained on."
    )
    objective_metric: str | None = pydantic.Field(default=None, max_length=63, description="Its objective.")
    objective_value: float | None = pydantic.Field(default=None, description="The objective's value.")
    created: str | None = pydantic.Field(default=None, description="When it was registered (RFC 3339).")


class Alias(common.ApiModel):
    """An alias and the version it names."""

    name: str = pydantic.Field(max_length=63, description="champion, challenger, ...")
    version: int = pydantic.Field(ge=1, description="The version it names.")
    since: str | None = pydantic.Field(default=None, description="When it moved there (RFC 3339).")


class AliasMove(common.ApiModel):
    """One move of an alias."""

    alias: str = pydantic.Field(max_length=63, description="The alias moved.")
    from_: int | None = pydantic.Field(
        default=None, alias="from", description="The version it named before (none: it is new)."
    )
    to: int = pydantic.Field(ge=1, description="The version it names now.")
    by: str = pydantic.Field(
        max_length=128,
        description="Who or what moved it: annotation (with the field manager that set it), sweep/<name> "
        "or promotion-rule.",
    )
    reason: str = pydantic.Field(default="", max_length=512, description="Why, for people.")
    time: str | None = pydantic.Field(default=None, description="When (RFC 3339).")


class MLflowVersion(common.ApiModel):
    """One version as exported to MLflow: its run and its registered model version."""

    version: int = pydantic.Field(ge=1, description="The Model's version number.")
    run_id: str = pydantic.Field(max_length=256, description="The MLflow run that records it.")
    model_version: str | None = pydantic.Field(
        default=None,
        max_length=32,
        description="The MLflow registered model version (MLflow numbers its versions itself).",
    )


class MLflowExport(common.ApiModel):
    """Where the Model's versions went in MLflow and which are there (set only when the operator
    has an MLflow tracking URI)."""

    tracking_uri: str = pydantic.Field(
        max_length=2048, description="The tracking server the state below belongs to (no credentials)."
    )
    experiment: str = pydantic.Field(max_length=500, description="The MLflow experiment of the Model.")
    experiment_id: str | None = pydantic.Field(default=None, max_length=64, description="Its id.")
    registered_model: str = pydantic.Field(
        max_length=256, description="The MLflow registered model (<namespace>.<model>)."
    )
    exported_through: int = pydantic.Field(
        default=0,
        ge=0,
        description="Every version up to this number is exported (or was deleted before it could be).",
    )
    versions: list[MLflowVersion] = pydantic.Field(
        default_factory=list,
        max_length=MAX_STATUS_VERSIONS,
        description="The newest exported versions, newest first.",
    )
    aliases: dict[str, str] = pydantic.Field(
        default_factory=dict,
        description="The aliases as last mirrored onto the registered model: alias -> MLflow version.",
        json_schema_extra={"maxProperties": MAX_ALIASES},
    )


class ModelStatus(common.StatusBase):
    """The newest versions, the aliases and their last moves; counts for printer columns."""

    versions: list[ModelVersion] = pydantic.Field(
        default_factory=list,
        max_length=MAX_STATUS_VERSIONS,
        description="The newest versions (at most spec.statusVersions), newest first.",
    )
    version_count: int = pydantic.Field(default=0, ge=0, description="Versions registered and not deleted.")
    latest_version: int | None = pydantic.Field(default=None, ge=1, description="The newest version.")
    versions_assigned: int = pydantic.Field(
        default=0,
        ge=0,
        description="The highest version number ever given (numbers are never reused, even after a "
        "version is deleted).",
    )
    aliases: list[Alias] = pydantic.Field(
        default_factory=list,
        max_length=MAX_ALIASES,
        description="Each alias and the version it names.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    champion: int | None = pydantic.Field(
        default=None, ge=1, description="The version the champion alias names (printer columns)."
    )
    alias_history: list[AliasMove] = pydantic.Field(
        default_factory=list,
        max_length=MAX_ALIAS_HISTORY,
        description="The last alias moves, newest first.",
    )
    alias_annotations: dict[str, str] = pydantic.Field(
        default_factory=dict,
        description="The alias annotations last acted on (moved or refused), so that an annotation set "
        "earlier never undoes a later promotion.",
        json_schema_extra={"maxProperties": MAX_ALIASES},
    )
    mlflow: MLflowExport | None = pydantic.Field(
        default=None,
        description="The export to MLflow: the experiment, the registered model and the versions "
        "there (only with an MLflow tracking URI configured).",
    )


class Model(common.Resource):
    """A registered model: versions from TrainingJobs and sweeps, and aliases that name them."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.metadata.name.size() <= 63",
                    "message": "a Model's name is at most 63 characters (its versions carry it as a label)",
                }
            ]
        }
    )

    crd: ClassVar[common.CRDMeta] = common.CRDMeta(
        kind="Model",
        plural="models",
        singular="model",
        short_names=("mlm",),
        printer_columns=(
            common.PrinterColumn(
                name="Latest",
                json_path=".status.latestVersion",
                type="integer",
                description="Newest version.",
            ),
            common.PrinterColumn(
                name="Champion",
                json_path=".status.champion",
                type="integer",
                description="The version the champion alias names.",
            ),
            common.PrinterColumn(
                name="Versions",
                json_path=".status.versionCount",
                type="integer",
                description="Versions kept.",
            ),
            common.PrinterColumn(name="Description", json_path=".spec.description", priority=1),
        ),
        description="A registered model: versions recorded from TrainingJobs (spec.registerAs) and sweeps "
        "(spec.promote.model) that outlive them, and aliases (champion, challenger...) that name versions.",
    )

    spec: ModelSpec = pydantic.Field(default_factory=ModelSpec)
    status: ModelStatus = pydantic.Field(default_factory=ModelStatus)
