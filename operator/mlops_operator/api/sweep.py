"""HyperparameterSweep: many TrainingJobs (trials) searching a parameter space for the best model.

Why the shapes below:
- The search space is a list of typed parameters (a list-map keyed by ``name``, so the
  apiserver refuses duplicates), each with CEL rules that name the broken field: the
  apiserver refuses ``low >= high``, a categorical without ``values`` (or ``values: []``),
  ``values`` on a range, ``log`` with ``low <= 0`` or a non-positive ``step`` before the
  operator ever sees the sweep. CEL cannot compare the ``values`` themselves (untyped JSON
  scalars), so duplicate choices are refused by the operator (``parameter_problems``) before
  any trial.
- Multi-fidelity algorithms (``successiveHalving``, ``hyperband``) and median early stopping
  need a *budget*: a numeric parameter of the search space (``n_estimators``, ``max_iter``,
  ``max_samples``...) whose ``low``/``high`` are the smallest and largest budget. It must be
  declared in ``searchSpace`` (so its type and bounds are checked by the same rules as any
  parameter); the algorithm does not sample it but sets it rung by rung.
- What defines the search (space, objective, algorithm, seed, trial template, early stopping)
  is immutable, as in Katib: the sweep's history must stay comparable trial to trial.
  ``maxTrials``, ``parallelism``, ``maxFailedTrials`` and ``promote`` may change while it runs.
- Status stays small whatever the trial count (Katib's trial lists outgrew etcd's object-size
  limit, katib#1847): counts, the best trial, the last few failures, never the trial list.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import pydantic

from mlops_operator.api import common, estimators, trainingjob

MULTI_FIDELITY = ("successiveHalving", "hyperband")
PARAMETER_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_PARAMETERS = 32
MAX_CATEGORICAL_VALUES = 64
MAX_FAILURES_KEPT = 5

# How a trial TrainingJob says what it is (the operator writes these; the CLI's plots read them).
LABEL_TRIAL_INDEX = "mlops.dev/trial-index"
LABEL_TRIAL_CONFIG = "mlops.dev/trial-config"
LABEL_TRIAL_RUNG = "mlops.dev/trial-rung"
ANNOTATION_TRIAL_PARAMS = "mlops.dev/trial-params"  # the sampled parameters, JSON
ANNOTATION_TRIAL_GENERATION = "mlops.dev/trial-generation"
ANNOTATION_TRIAL_BUDGET = "mlops.dev/trial-budget"
ANNOTATION_TRIAL_RESOURCES = "mlops.dev/trial-resources"  # the suggestion a trial was given (auto), JSON

# A categorical choice: a JSON scalar (null stands for Python's None, e.g. ``max_depth: null``).
CategoricalValue = str | int | float | bool | None


class SearchParameter(common.ApiModel):
    """One dimension of the search space: an estimator parameter and the values it may take."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            # CEL cannot see values (untyped items): "a categorical parameter needs values" is an
            # OpenAPI value validation instead (the apiserver answers "...values: Required value").
            # "categorical with values, or int/float". The apiserver reports the branch that
            # matched more (categorical), so the error is "...values: Required value".
            common.VALUE_ANY_OF: [
                {"required": ["values"], "properties": {"type": {"enum": ["categorical"]}}},
                {"properties": {"type": {"enum": ["int", "float"]}}},
            ],
            "x-kubernetes-validations": [
                {
                    "rule": "self.type == 'categorical' || (has(self.low) && has(self.high))",
                    "message": "low and high are required for an int or float parameter",
                    "fieldPath": ".low",
                },
                {
                    "rule": "!has(self.low) || !has(self.high) || self.low < self.high",
                    "message": "low must be less than high",
                    "fieldPath": ".low",
                },
                {
                    "rule": "self.type != 'categorical' || (!has(self.low) && !has(self.high) && "
                    "!has(self.step) && !self.log)",
                    "message": "low, high, step and log are only for int and float parameters",
                    "fieldPath": ".type",
                },
                {
                    "rule": "!self.log || (has(self.low) && self.low > 0.0)",
                    "message": "log scale needs low > 0",
                    "fieldPath": ".log",
                },
                {
                    "rule": "!self.log || !has(self.step)",
                    "message": "step cannot be combined with log scale",
                    "fieldPath": ".step",
                },
                {
                    "rule": "self.type != 'int' || ((!has(self.low) || double(int(self.low)) == self.low) && "
                    "(!has(self.high) || double(int(self.high)) == self.high))",
                    "message": "low and high of an int parameter must be whole numbers",
                    "fieldPath": ".low",
                },
                {
                    "rule": "self.type != 'int' || !has(self.step) || double(int(self.step)) == self.step",
                    "message": "step of an int parameter must be a whole number",
                    "fieldPath": ".step",
                },
                {
                    "rule": "!has(self.step) || !has(self.low) || !has(self.high) || "
                    "self.step <= self.high - self.low",
                    "message": "step must not exceed high - low",
                    "fieldPath": ".step",
                },
            ],
        }
    )

    name: str = pydantic.Field(
        min_length=1,
        max_length=63,
        pattern=PARAMETER_NAME_PATTERN,
        description="The parameter this dimension sets: a key of trialTemplate.model.params (checked "
        "against the estimator) or of trialTemplate.trainer.params (your code's own, passed through).",
    )
    type: Literal["int", "float", "categorical"] = pydantic.Field(
        description="int and float are ranges [low, high]; categorical picks one of values."
    )
    low: float | None = pydantic.Field(default=None, description="Lower bound, inclusive (int and float).")
    high: float | None = pydantic.Field(default=None, description="Upper bound, inclusive (int and float).")
    log: bool = pydantic.Field(
        default=False, description="Sample on a log scale (needs low > 0); for learning rates, C, alpha..."
    )
    step: float | None = pydantic.Field(
        default=None,
        gt=0,
        description="Quantisation: values are low, low+step, low+2*step... up to high. "
        "Floats in a grid search need a step or algorithm.gridPoints.",
    )
    values: list[CategoricalValue] | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=MAX_CATEGORICAL_VALUES,
        description="The choices of a categorical parameter (required for it, and only for it): strings, "
        "numbers, booleans or null (None).",
    )

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> SearchParameter:
        problems = parameter_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def parameter_problems(p: SearchParameter) -> list[str]:
    """The CEL rules above, in Python (for specs that never passed the apiserver: tests, the
    CLI), plus the one CEL cannot see: distinct choices (the items are untyped JSON scalars)."""
    where = f"searchSpace[{p.name}]"
    out: list[str] = []
    if p.type == "categorical":
        if not p.values:
            out.append(f"{where}.values: a categorical parameter needs at least one value")
        elif len({json.dumps(v) for v in p.values}) != len(p.values):
            out.append(f"{where}.values: choices must be distinct")
        if p.low is not None or p.high is not None or p.step is not None or p.log:
            out.append(f"{where}: low, high, step and log are only for int and float parameters")
        return out
    if p.values is not None:
        out.append(f"{where}.values: values is only for categorical parameters (use low/high)")
    if p.low is None or p.high is None:
        out.append(f"{where}: low and high are required for an int or float parameter")
        return out
    if not p.low < p.high:
        out.append(f"{where}.low: low ({p.low:g}) must be less than high ({p.high:g})")
    if p.log and p.low <= 0:
        out.append(f"{where}.log: log scale needs low > 0 (low is {p.low:g})")
    if p.log and p.step is not None:
        out.append(f"{where}.step: step cannot be combined with log scale")
    if p.type == "int":
        if not (float(p.low).is_integer() and float(p.high).is_integer()):
            out.append(f"{where}.low: low and high of an int parameter must be whole numbers")
        if p.step is not None and not float(p.step).is_integer():
            out.append(f"{where}.step: step of an int parameter must be a whole number")
    if p.step is not None and p.step > p.high - p.low:
        out.append(f"{where}.step: step ({p.step:g}) must not exceed high - low ({p.high - p.low:g})")
    return out


class Objective(common.ApiModel):
    """What the sweep optimises: one metric the trials report, and in which direction."""

    metric: str = pydantic.Field(
        max_length=63,
        pattern=trainingjob.METRIC_NAME_PATTERN,
        description="The metric to optimise, computed on each trial's validation split: one of the "
        "built-in metrics for an estimator, any metric your code reports for a trainer.",
    )
    direction: trainingjob.Direction | None = pydantic.Field(
        default=None,
        description="maximize or minimize; defaults to minimize for log_loss, rmse and mae, else maximize.",
    )
    goal: float | None = pydantic.Field(
        default=None,
        description="Stop the sweep as Succeeded as soon as a trial reaches this value "
        "(at least it when maximizing, at most it when minimizing).",
    )

    def effective_direction(self) -> trainingjob.Direction:
        return self.direction or estimators.default_direction(self.metric)


class Budget(common.ApiModel):
    """The fidelity a multi-fidelity algorithm or early stopping spends rung by rung."""

    parameter: str = pydantic.Field(
        min_length=1,
        max_length=63,
        pattern=PARAMETER_NAME_PATTERN,
        description="A numeric searchSpace parameter (n_estimators, max_iter, max_samples...): its low is "
        "the first rung's budget, its high the last's. It is set by rung, not sampled.",
    )
    reduction_factor: int = pydantic.Field(
        default=3,
        ge=2,
        le=10,
        description="eta: each rung multiplies the budget by it and keeps the best 1/eta of the trials.",
    )


class Algorithm(common.ApiModel):
    """How suggestions are made."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.sampler) || self.name in ['successiveHalving', 'hyperband']",
                    "message": "algorithm.sampler is only for successiveHalving and hyperband",
                    "fieldPath": ".sampler",
                },
                {
                    "rule": "!has(self.gridPoints) || self.name == 'grid'",
                    "message": "algorithm.gridPoints is only for grid",
                    "fieldPath": ".gridPoints",
                },
                {
                    "rule": "!has(self.populationSize) || self.name == 'cmaes'",
                    "message": "algorithm.populationSize is only for cmaes",
                    "fieldPath": ".populationSize",
                },
                {
                    "rule": "!has(self.startupTrials) || self.name in ['tpe', 'cmaes'] || "
                    "(has(self.sampler) && self.sampler == 'tpe')",
                    "message": "algorithm.startupTrials is only for tpe and cmaes samplers",
                    "fieldPath": ".startupTrials",
                },
            ]
        }
    )

    name: Literal["grid", "random", "tpe", "cmaes", "successiveHalving", "hyperband"] = pydantic.Field(
        default="tpe",
        description="grid (every combination), random, tpe and cmaes (Optuna's TPE; CMA-ES from the cmaes "
        "library Optuna wraps), successiveHalving and hyperband (asynchronous, over algorithm.budget).",
    )
    budget: Budget | None = pydantic.Field(
        default=None, description="Required by successiveHalving, hyperband and earlyStopping."
    )
    sampler: Literal["random", "tpe"] | None = pydantic.Field(
        default=None,
        description="How successiveHalving and hyperband pick new configurations; default random.",
    )
    grid_points: int | None = pydantic.Field(
        default=None, ge=2, le=1000, description="grid: points per float parameter that has no step."
    )
    startup_trials: int | None = pydantic.Field(
        default=None,
        ge=1,
        le=1000,
        description="tpe/cmaes: random trials before the model-based sampler takes over (tpe 10, cmaes 1).",
    )
    population_size: int | None = pydantic.Field(
        default=None, ge=4, le=1000, description="cmaes: the population per generation; default 4+3ln(d)."
    )


class EarlyStopping(common.ApiModel):
    """Median rule on the rungs of algorithm.budget: a trial is stopped at a rung if it is worse
    than the median of the trials that reached that rung before it."""

    rule: Literal["median"] = pydantic.Field(default="median", description="The stopping rule.")
    min_trials: int = pydantic.Field(
        default=5, ge=1, le=1000, description="Values needed at a rung before anything is stopped there."
    )
    start_step: int = pydantic.Field(
        default=0, ge=0, le=20, description="The first rung (0-based) at which trials may be stopped."
    )


class Promote(common.ApiModel):
    """Hand the best model on when the sweep succeeds: to a ModelDeployment, to a Model, or both."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.modelDeployment) || has(self.model)",
                    "message": "promote needs modelDeployment, model or both",
                    "fieldPath": ".model",
                }
            ]
        }
    )

    model_deployment: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=common.DNS_LABEL_PATTERN,
        description="The ModelDeployment (same namespace) to hand the best trial's model to: created "
        "when missing; one the operator did not create for this sweep is never written (the status says "
        "which spec.model to set).",
    )
    model: str | None = pydantic.Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=trainingjob.OBJECT_NAME_PATTERN,
        description="A Model (same namespace) to record the best trial's model in as a new version, "
        "moving promote.alias to it; the version outlives the sweep and its trials.",
    )
    alias: str = pydantic.Field(
        default="champion",
        min_length=1,
        max_length=63,
        pattern=common.DNS_LABEL_PATTERN,
        description="The Model alias the promoted version takes (with model only).",
    )
    threshold: float | None = pydantic.Field(
        default=None,
        description="Promote only if the best objective is at least this (maximize) "
        "or at most this (minimize).",
    )

    @pydantic.model_validator(mode="after")
    def _has_a_target(self) -> Promote:
        if self.model_deployment is None and self.model is None:
            raise ValueError("promote needs modelDeployment, model or both")
        return self


_BUDGETED = "self.algorithm.name in ['successiveHalving', 'hyperband']"


def _cel_list(values: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


_METRIC_RULES: list[Any] = [
    {
        "rule": "!has(self.trialTemplate.model) || "
        f"!(self.trialTemplate.model.estimator in {_cel_list(estimators.names(task))}) || "
        f"self.objective.metric in {_cel_list(estimators.metrics_for(task))}",
        "message": f"objective.metric: a {'regressor' if task == 'regression' else 'classifier'} "
        "supports only " + ", ".join(estimators.metrics_for(task)),
        "fieldPath": ".objective.metric",
    }
    for task in ("classification", "regression")
]


class TrialResources(common.Resources):
    """The trials' resources, which may follow what the finished trials measured (``auto``)."""

    auto: bool = pydantic.Field(
        default=False,
        description="Rightsizing: later trials take the suggestion measured on the trials that "
        "finished (the largest cpu, memory and gpu of their status.suggestedResources); the cpu, "
        "memory and gpu given here are the first trials' requests. A limit below the new request is "
        "raised to it. The trials given a suggestion are annotated mlops.dev/trial-resources and "
        "counted in status.rightsizing.",
    )

    def requests(self) -> common.Resources:
        """These resources as a TrainingJob takes them (without ``auto``)."""
        return common.Resources.model_validate(self.model_dump(exclude={"auto"}))


class TrialTemplate(trainingjob.TrainingJobSpec):
    """A TrainingJob spec whose resources may follow the finished trials' use (``resources.auto``)."""

    resources: TrialResources = pydantic.Field(
        default_factory=TrialResources,
        description="cpu/memory requests and limits; gpu adds nvidia.com/gpu and the GPU node selector and "
        "toleration. With auto: true, the trials created once some have finished get the requests those "
        "measured they need.",
    )


class HyperparameterSweepSpec(common.ApiModel):
    """A search over trialTemplate's model parameters."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                *_METRIC_RULES,
                {
                    "rule": f"!({_BUDGETED}) || has(self.algorithm.budget)",
                    "message": "algorithm.budget is required for successiveHalving and hyperband",
                    "fieldPath": ".algorithm",
                },
                {
                    "rule": "!has(self.earlyStopping) || has(self.algorithm.budget)",
                    "message": "earlyStopping needs algorithm.budget (the rungs it stops trials at)",
                    "fieldPath": ".earlyStopping",
                },
                {
                    "rule": f"!has(self.earlyStopping) || !({_BUDGETED})",
                    "message": "earlyStopping is built into successiveHalving and hyperband; remove it",
                    "fieldPath": ".earlyStopping",
                },
                {
                    "rule": f"!has(self.algorithm.budget) || {_BUDGETED} || has(self.earlyStopping)",
                    "message": "algorithm.budget is only used by successiveHalving, hyperband "
                    "or earlyStopping",
                    "fieldPath": ".algorithm.budget",
                },
                {
                    "rule": "!has(self.algorithm.budget) || self.searchSpace.exists(p, "
                    "p.name == self.algorithm.budget.parameter && p.type != 'categorical')",
                    "message": "algorithm.budget.parameter must name an int or float parameter "
                    "of searchSpace",
                    "fieldPath": ".algorithm.budget.parameter",
                },
                {
                    "rule": "self.algorithm.name != 'grid' || has(self.algorithm.gridPoints) || "
                    "self.searchSpace.all(p, p.type != 'float' || has(p.step))",
                    "message": "a grid over float parameters needs a step on each or algorithm.gridPoints",
                    "fieldPath": ".searchSpace",
                },
                {
                    "rule": "!has(self.trialTemplate.metrics) || "
                    "self.objective.metric in self.trialTemplate.metrics",
                    "message": "objective.metric must be one of trialTemplate.metrics",
                    "fieldPath": ".objective.metric",
                },
                {
                    "rule": "self.algorithm.name != 'cmaes' || "
                    "self.searchSpace.exists(p, p.type != 'categorical')",
                    "message": "cmaes needs at least one int or float parameter in searchSpace",
                    "fieldPath": ".searchSpace",
                },
                {
                    "rule": "!has(self.trialTemplate.registerAs)",
                    "message": "trialTemplate.registerAs: trials are not registered one by one; set "
                    "promote.model to register the best trial",
                    "fieldPath": ".trialTemplate.registerAs",
                },
                {
                    "rule": "self.searchSpace == oldSelf.searchSpace && "
                    "self.objective == oldSelf.objective && self.algorithm == oldSelf.algorithm",
                    "message": "searchSpace, objective and algorithm are immutable; create a new sweep",
                },
                {
                    "rule": "has(self.seed) == has(oldSelf.seed) && "
                    "(!has(self.seed) || self.seed == oldSelf.seed)",
                    "message": "seed is immutable",
                    "fieldPath": ".seed",
                },
                {
                    "rule": "has(self.earlyStopping) == has(oldSelf.earlyStopping) && "
                    "(!has(self.earlyStopping) || self.earlyStopping == oldSelf.earlyStopping)",
                    "message": "earlyStopping is immutable",
                    "fieldPath": ".earlyStopping",
                },
            ]
        }
    )

    trial_template: TrialTemplate = pydantic.Field(
        description="The TrainingJob spec every trial runs, with its model.params (or trainer.params) "
        "overridden by the trial's parameters and its objective set to objective.metric.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "trialTemplate is immutable; create a new sweep"}
            ]
        },
    )
    search_space: list[SearchParameter] = pydantic.Field(
        min_length=1,
        max_length=MAX_PARAMETERS,
        description="The parameters searched, at most 32, names unique.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    objective: Objective = pydantic.Field(description="The metric to optimise and its direction.")
    algorithm: Algorithm = pydantic.Field(description="The search algorithm and its settings.")
    seed: int | None = pydantic.Field(
        default=None,
        ge=0,
        le=2**31 - 1,
        description="Random seed: the same seed and the same trial outcomes give the same suggestions. "
        "Default: derived from the sweep's UID (shown in status.seed).",
    )
    max_trials: int = pydantic.Field(
        default=20,
        ge=1,
        le=100000,
        description="Trials (TrainingJobs) to run at most; with a budget, every rung run is a trial. "
        "Mutable.",
    )
    parallelism: int = pydantic.Field(
        default=3, ge=1, le=1000, description="Trials running at the same time at most. Mutable."
    )
    max_failed_trials: int = pydantic.Field(
        default=3,
        ge=0,
        le=100000,
        description="The sweep fails when more trials than this have failed. Mutable (raising it "
        "does not revive a sweep that already failed).",
    )
    early_stopping: EarlyStopping | None = pydantic.Field(
        default=None, description="Stop unpromising trials at the rungs of algorithm.budget."
    )
    promote: Promote | None = pydantic.Field(
        default=None,
        description="Hand the best model to a ModelDeployment on success (created by the operator when "
        "missing; never written when its user or GitOps owns it) and/or record it as a Model version.",
    )

    @pydantic.model_validator(mode="after")
    def _trials_are_not_registered(self) -> HyperparameterSweepSpec:
        if self.trial_template.register_as is not None:
            raise ValueError(
                "trialTemplate.registerAs: trials are not registered one by one; set promote.model "
                "to register the best trial"
            )
        return self


# --------------------------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------------------------


class TrialCounts(common.ApiModel):
    """How many trials are in each state (a TrainingJob per trial)."""

    created: int = pydantic.Field(default=0, ge=0, description="Trials created so far.")
    pending: int = pydantic.Field(default=0, ge=0, description="Created, not running yet.")
    running: int = pydantic.Field(default=0, ge=0, description="Running now.")
    succeeded: int = pydantic.Field(default=0, ge=0, description="Finished with an objective value.")
    failed: int = pydantic.Field(default=0, ge=0, description="Failed (counted against maxFailedTrials).")
    pruned: int = pydantic.Field(
        default=0, ge=0, description="Configurations stopped below the top rung (early stopping, halving)."
    )
    stopped: int = pydantic.Field(
        default=0, ge=0, description="Unfinished trials stopped because the sweep ended."
    )


class BestTrial(common.Displayed):
    """The best trial so far."""

    DISPLAY: ClassVar[dict[str, tuple[str, Callable[[float], str]]]] = {
        "objective_short": ("objective_value", common.significant)
    }

    name: str = pydantic.Field(description="The trial's TrainingJob.")
    index: int = pydantic.Field(ge=0, description="The trial's index.")
    params: dict[str, Any] = pydantic.Field(
        default_factory=dict, description="The parameters it was trained with (long strings cut)."
    )
    objective_value: float = pydantic.Field(description="Its objective.metric on the validation split.")
    objective_short: str | None = pydantic.Field(
        default=None, max_length=32, description="objectiveValue to 4 significant digits (printer columns)."
    )
    model_uri: str | None = pydantic.Field(default=None, description="Where its model directory is.")
    model_s3: common.S3Connection | None = pydantic.Field(
        default=None, description="How pods reach an s3:// modelUri (the trial's status.modelS3)."
    )
    rung: int | None = pydantic.Field(default=None, ge=0, description="Its rung, with a budget.")


class TrialFailure(common.ApiModel):
    """Why a trial failed (the last few are kept)."""

    trial: str = pydantic.Field(description="The trial's TrainingJob.")
    reason: str = pydantic.Field(default="", max_length=128, description="One CamelCase word.")
    message: str = pydantic.Field(default="", max_length=512, description="What the trial reported.")


PromotionState = Literal["Created", "Updated", "NotApplied"]


class Promotion(common.ApiModel):
    """The best model and the ModelDeployment it was promoted to (applied or not)."""

    model_deployment: str = pydantic.Field(description="The ModelDeployment's name.")
    trial: str = pydantic.Field(description="The promoted trial.")
    model_uri: str | None = pydantic.Field(default=None, description="The promoted model's directory.")
    objective_value: float | None = pydantic.Field(default=None, description="Its objective value.")
    time: str | None = pydantic.Field(default=None, description="When it was promoted (RFC 3339).")
    state: PromotionState | None = pydantic.Field(
        default=None,
        description="Created: the operator created the ModelDeployment; Updated: it updated the one it "
        "had created for this sweep; NotApplied: the ModelDeployment belongs to its user (or GitOps), "
        "so the operator left its spec alone (the Promoted condition says what to set).",
    )


class Rightsizing(common.ApiModel):
    """Requested against used over the finished trials, and what auto gave the later ones."""

    measured_trials: int = pydantic.Field(
        default=0, ge=0, description="Finished trials that reported what they used."
    )
    used: trainingjob.ResourcesUsed | None = pydantic.Field(
        default=None, description="The largest of each figure over them."
    )
    suggested: trainingjob.SuggestedResources | None = pydantic.Field(
        default=None,
        description="The largest suggestion over them: what trialTemplate.resources.auto gives the trials "
        "created next.",
    )
    auto_trials: int = pydantic.Field(
        default=0, ge=0, description="Trials created with a suggestion instead of the template's requests."
    )
    auto_resources: trainingjob.SuggestedResources | None = pydantic.Field(
        default=None, description="The requests the last of them was given."
    )


class HyperparameterSweepStatus(common.StatusBase):
    """A bounded summary: counts, best trial, last failures; never the trial list."""

    reason: str | None = pydantic.Field(
        default=None, max_length=128, description="Why the sweep is where it is (one CamelCase word)."
    )
    message: str | None = pydantic.Field(default=None, max_length=1024, description="Details for people.")
    progress: str | None = pydantic.Field(
        default=None, description="Finished trials / trials planned, e.g. 37/100."
    )
    trials: TrialCounts = pydantic.Field(default_factory=TrialCounts, description="Trials per state.")
    best_trial: BestTrial | None = pydantic.Field(default=None, description="The best trial so far.")
    goal_reached: bool | None = pydantic.Field(
        default=None, description="Whether objective.goal was reached."
    )
    seed: int | None = pydantic.Field(default=None, ge=0, description="The seed in use.")
    start_time: str | None = pydantic.Field(default=None, description="When the first trial was created.")
    completion_time: str | None = pydantic.Field(default=None, description="When the sweep ended.")
    last_failures: list[TrialFailure] = pydantic.Field(
        default_factory=list, max_length=MAX_FAILURES_KEPT, description="The last few trial failures."
    )
    promotion: Promotion | None = pydantic.Field(default=None, description="Where the best model went.")
    rightsizing: Rightsizing | None = pydantic.Field(
        default=None,
        description="The trials' measured use and the suggested requests (the largest over the finished "
        "trials), and the trials given them (trialTemplate.resources.auto).",
    )


class HyperparameterSweep(common.Resource):
    """A hyperparameter search whose trials are TrainingJobs owned by the sweep."""

    crd: ClassVar[common.CRDMeta] = common.CRDMeta(
        kind="HyperparameterSweep",
        plural="hyperparametersweeps",
        singular="hyperparametersweep",
        short_names=("hps", "sweep"),
        printer_columns=(
            common.PrinterColumn(
                name="Progress", json_path=".status.progress", description="Finished/planned."
            ),
            common.PrinterColumn(
                name="Best",
                json_path=".status.bestTrial.objectiveShort",
                description="Best objective value so far (4 significant digits).",
            ),
            common.PrinterColumn(
                name="Phase", json_path=".status.phase", description="Pending, Running, ..."
            ),
            common.PrinterColumn(
                name="Algorithm",
                json_path=".spec.algorithm.name",
                priority=1,
                description="Search algorithm.",
            ),
            common.PrinterColumn(
                name="Metric", json_path=".spec.objective.metric", priority=1, description="Objective metric."
            ),
        ),
        description="A hyperparameter search whose trials are TrainingJobs; reports progress and the best "
        "trial, and can promote the best model to a ModelDeployment.",
    )

    spec: HyperparameterSweepSpec
    status: HyperparameterSweepStatus = pydantic.Field(default_factory=HyperparameterSweepStatus)
