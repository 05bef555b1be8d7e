"""Types shared by the four kinds: conditions, resources, storage URIs and CRD metadata.

These models are the single source of truth for the CRDs (``make crds`` renders
``crds/*.yaml`` from them), so everything a user can write in a spec is declared
here with a description, bounds and, where a rule spans fields, a CEL rule in
``x-kubernetes-validations``. The module is pure: no kopf, no client, no clock.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, Self

import pydantic
from pydantic import alias_generators

GROUP = "mlops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Kubernetes quantity, as in k8s.io/apimachinery/pkg/api/resource (non-negative only).
QUANTITY_PATTERN = r"^(\+)?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][-+]?[0-9]+))?$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# json_schema_extra key of a model's value-validation anyOf: what CEL cannot check because it
# reads a field of untyped items (the CRD generator renders it as the node's ``anyOf``).
VALUE_ANY_OF = "x-mlops-value-any-of"
# S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens (AWS's naming rules).
S3_BUCKET_PATTERN = r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"
STORAGE_URI_PATTERN = (
    r"^(pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/.*)?|file:///.*|s3://" + S3_BUCKET_PATTERN + r"(/.*)?)$"
)
S3_ENDPOINT_PATTERN = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# The keys an S3 credentials Secret holds (the AWS SDKs' environment names, as KServe uses).
S3_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
S3_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"
S3_SESSION_TOKEN = "AWS_SESSION_TOKEN"


class ApiModel(pydantic.BaseModel):
    """Base of every spec and status model: camelCase on the wire, unknown fields refused."""

    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=False,
    )

    def to_api(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


ConditionStatus = Literal["True", "False", "Unknown"]
# What a GitOps tool should conclude from a status, in kstatus' words
# (sigs.k8s.io/cli-utils/pkg/kstatus): work still under way, done, or unable to proceed.
Progress = Literal["InProgress", "Current", "Stalled"]


class Condition(ApiModel):
    """A condition, as in the Kubernetes API conventions (metav1.Condition)."""

    type: str = pydantic.Field(
        description="Type of the condition: Ready, Running, Succeeded, Failed, Suspended, ..."
    )
    status: ConditionStatus = pydantic.Field(description="True, False or Unknown.")
    reason: str = pydantic.Field(
        default="", max_length=1024, description="One CamelCase word that says why the condition is as it is."
    )
    message: str = pydantic.Field(default="", max_length=32768, description="A sentence for people.")
    last_transition_time: str | None = pydantic.Field(
        default=None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = pydantic.Field(
        default=None, ge=0, description="The .metadata.generation the condition was set for."
    )


def rfc3339(now: datetime.datetime) -> str:
    """Format a timestamp the way Kubernetes does (second precision, Z)."""
    return now.astimezone(datetime.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: object) -> datetime.datetime | None:
    """A Kubernetes timestamp (``2026-01-02T03:04:05Z``) as an aware datetime; None when absent
    or not a timestamp."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def significant(value: float, digits: int = 4) -> str:
    """A number as a person reads it in a printer column: ``0.9565``, ``12.35``, ``1.235e+05``."""
    return f"{value:.{digits}g}"


def human_duration(seconds: float) -> str:
    """A duration as kubectl prints one (k8s.io/apimachinery's ``duration.HumanDuration``):
    ``5s``, ``3m12s``, ``45m``, ``5h3m``, ``2d3h``, ``1y20d``."""
    s = int(seconds)
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes, hours = s // 60, s // 3600
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


class Displayed(ApiModel):
    """A model with fields for printer columns, derived from its numbers whenever it is written.

    A CRD printer column prints a JSONPath value as it is (``0.9565217391304348``, ``5``), so a
    readable column needs a string field. ``DISPLAY`` maps each such field to the number it
    shows and the formatter; the serializer fills it in, so no builder can forget or stale it.
    """

    DISPLAY: ClassVar[dict[str, tuple[str, Callable[[float], str]]]] = {}

    @pydantic.model_serializer(mode="wrap")
    def _with_display(self, handler: pydantic.SerializerFunctionWrapHandler, info: Any) -> Any:
        data = handler(self)
        if not isinstance(data, dict):
            return data
        for name, (source, fmt) in self.DISPLAY.items():
            field = type(self).model_fields[name]
            key = (field.alias or name) if info.by_alias else name
            value = getattr(self, source)
            if value is None:
                data.pop(key, None)
            else:
                data[key] = fmt(float(value))
        return data


class StatusBase(ApiModel):
    """What every kind's status has: the generation seen, a phase for printer columns, conditions."""

    observed_generation: int | None = pydantic.Field(
        default=None, ge=0, description="The .metadata.generation this status was computed for."
    )
    phase: str | None = pydantic.Field(default=None, description="A one-word summary for printer columns.")
    conditions: list[Condition] = pydantic.Field(
        default_factory=list,
        description="Latest observations of the resource's state.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def is_true(self, type_: str) -> bool:
        cond = self.condition(type_)
        return cond is not None and cond.status == "True"

    def with_condition(
        self,
        type_: str,
        status: ConditionStatus,
        *,
        reason: str,
        message: str = "",
        now: datetime.datetime,
        generation: int | None = None,
    ) -> Self:
        """A copy with the condition set; lastTransitionTime moves only when the status changes."""
        old = self.condition(type_)
        stamp = rfc3339(now)
        if old is not None and old.status == status and old.last_transition_time:
            stamp = old.last_transition_time
        new = Condition(
            type=type_,
            status=status,
            reason=reason,
            message=message[:32768],
            last_transition_time=stamp,
            observed_generation=generation,
        )
        conditions = [c for c in self.conditions if c.type != type_] + [new]
        conditions.sort(key=lambda c: c.type)
        return self.model_copy(update={"conditions": conditions})

    def with_progress(
        self,
        progress: Progress,
        *,
        ready: bool,
        reason: str,
        message: str = "",
        now: datetime.datetime,
        generation: int | None,
    ) -> Self:
        """A copy with the conditions GitOps tools read: ``Ready``, ``Reconciling``, ``Stalled``.

        Flux (kstatus) reads a custom resource as InProgress while ``Reconciling`` is True (or
        ``status.observedGeneration`` lags ``metadata.generation``), Failed while ``Stalled`` is
        True, and Current otherwise; Argo CD's health checks and ``kubectl wait
        --for=condition=Ready`` read ``Ready``. Every kind sets all three through this one
        method, so they never disagree: ``InProgress`` sets Reconciling, ``Stalled`` sets Stalled,
        ``Current`` sets neither. ``ready`` is the kind's own judgement (a Succeeded run, a Ready
        Dataset, a serving model: a ModelDeployment whose canary was rolled back is Stalled but
        still Ready, its stable model answers); each condition carries ``generation``.
        """
        out = self
        for type_, on in (
            ("Ready", ready),
            ("Reconciling", progress == "InProgress"),
            ("Stalled", progress == "Stalled"),
        ):
            out = out.with_condition(
                type_,
                "True" if on else "False",
                reason=reason,
                message=message,
                now=now,
                generation=generation,
            )
        return out


class Resources(ApiModel):
    """Compute resources for a pod: requests equal limits for cpu and memory unless limits are given."""

    cpu: str | None = pydantic.Field(
        default=None,
        pattern=QUANTITY_PATTERN,
        description="CPU request, a Kubernetes quantity (e.g. 500m, 2).",
    )
    memory: str | None = pydantic.Field(
        default=None,
        pattern=QUANTITY_PATTERN,
        description="Memory request, a Kubernetes quantity (e.g. 512Mi).",
    )
    cpu_limit: str | None = pydantic.Field(
        default=None, pattern=QUANTITY_PATTERN, description="CPU limit; defaults to no limit."
    )
    memory_limit: str | None = pydantic.Field(
        default=None, pattern=QUANTITY_PATTERN, description="Memory limit; defaults to the memory request."
    )
    gpu: int = pydantic.Field(
        default=0,
        ge=0,
        le=16,
        description="Number of GPUs (nvidia.com/gpu). Adds the GPU node selector and toleration.",
    )

    def to_requirements(self, *, gpu_resource: str = "nvidia.com/gpu") -> dict[str, Any]:
        """The container's ``resources`` block (corev1.ResourceRequirements)."""
        requests: dict[str, str] = {}
        limits: dict[str, str] = {}
        if self.cpu:
            requests["cpu"] = self.cpu
        if self.memory:
            requests["memory"] = self.memory
        if self.cpu_limit:
            limits["cpu"] = self.cpu_limit
        memory_limit = self.memory_limit or self.memory
        if memory_limit:
            limits["memory"] = memory_limit
        if self.gpu:
            requests[gpu_resource] = str(self.gpu)
            limits[gpu_resource] = str(self.gpu)
        out: dict[str, Any] = {}
        if requests:
            out["requests"] = requests
        if limits:
            out["limits"] = limits
        return out


class Toleration(ApiModel):
    """A corev1 Toleration, for pods that must run on tainted nodes."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.operator) || self.operator != 'Exists' || !has(self.value)",
                    "message": "a toleration with operator Exists must not set value",
                    "fieldPath": ".value",
                }
            ]
        }
    )

    key: str | None = pydantic.Field(
        default=None, max_length=316, description="Taint key; empty matches all."
    )
    operator: Literal["Exists", "Equal"] | None = pydantic.Field(default=None, description="Exists or Equal.")
    value: str | None = pydantic.Field(default=None, max_length=63, description="Taint value for Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = pydantic.Field(
        default=None, description="Taint effect to match; empty matches all."
    )
    toleration_seconds: int | None = pydantic.Field(
        default=None, ge=0, description="For NoExecute: how long the pod stays bound after the taint appears."
    )

    @pydantic.model_validator(mode="after")
    def _exists_has_no_value(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator Exists must not set value")
        return self


StorageUri = pydantic.constr(pattern=STORAGE_URI_PATTERN)


class SecretRef(ApiModel):
    """A Secret in the resource's namespace."""

    name: str = pydantic.Field(
        min_length=1, max_length=253, pattern=SECRET_NAME_PATTERN, description="The Secret's name."
    )


class S3Connection(ApiModel):
    """How pods reach the object store behind ``s3://`` URIs.

    Credentials come from ``secretRef`` (keys ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``
    and optionally ``AWS_SESSION_TOKEN``), mounted into the workload pods only: the operator
    never reads the Secret. Without ``secretRef`` the pods use the AWS SDK's default chain
    (environment, web identity such as IRSA or EKS Pod Identity, instance profile).
    """

    endpoint: str | None = pydantic.Field(
        default=None,
        max_length=2048,
        pattern=S3_ENDPOINT_PATTERN,
        description="The S3 API's URL for S3-compatible stores (MinIO, versitygw, Ceph, GCS's XML API), "
        "e.g. http://10.0.0.5:9000; empty means AWS S3. http:// endpoints send data unencrypted.",
    )
    region: str | None = pydantic.Field(
        default=None,
        max_length=64,
        pattern=r"^[a-z0-9-]+$",
        description="The region to sign requests for (default: the SDK's, us-east-1 for most "
        "S3-compatible stores).",
    )
    secret_ref: SecretRef | None = pydantic.Field(
        default=None,
        description="A Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and optionally "
        "AWS_SESSION_TOKEN); empty means the pod's own identity.",
    )
    virtual_addressing: bool = pydantic.Field(
        default=False,
        description="Address buckets as <bucket>.<endpoint> instead of <endpoint>/<bucket> "
        "(path style, what most S3-compatible stores expect).",
    )

    def credentials_dir(self, secrets_root: str) -> str | None:
        """Where the workload pods see the Secret's keys (None: the SDK's default chain)."""
        if self.secret_ref is None:
            return None
        return f"{secrets_root.rstrip('/')}/s3/{self.secret_ref.name}"


@dataclasses.dataclass(frozen=True)
class StorageLocation:
    """A parsed storage URI: ``pvc://<claim>/<path>``, ``file:///<path>`` or ``s3://<bucket>/<prefix>``.

    Pods mount a claim at ``<root>/pvc/<claim>``; ``file://`` paths are used as they are
    (a hostPath volume on a real node, or the local disk when a workload runs in a test).
    ``s3://`` locations are never mounted: the workloads read and write them through
    ``mlops_workloads.storage``. For s3, ``claim`` holds the bucket.
    """

    scheme: Literal["pvc", "file", "s3"]
    claim: str | None
    path: str

    _RE: ClassVar[re.Pattern[str]] = re.compile(STORAGE_URI_PATTERN)

    @classmethod
    def parse(cls, uri: str) -> StorageLocation:
        if not cls._RE.match(uri):
            raise ValueError(
                f"storage URI {uri!r} is none of pvc://<claim>/<path>, file:///<path>, s3://<bucket>/<prefix>"
            )
        for scheme in ("pvc", "s3"):
            if uri.startswith(f"{scheme}://"):
                claim, _, path = uri[len(scheme) + 3 :].partition("/")
                return cls(scheme=scheme, claim=claim, path=path.strip("/"))
        return cls(scheme="file", claim=None, path="/" + uri[len("file:///") :].strip("/"))

    @property
    def remote(self) -> bool:
        """Whether the data lives in an object store (not mounted, not a local path)."""
        return self.scheme == "s3"

    @property
    def bucket(self) -> str | None:
        return self.claim if self.scheme == "s3" else None

    def local_path(self, pvc_root: str = "/mnt/mlops") -> str:
        """Where the data is inside a pod (or on the local disk for file://); s3 has none."""
        if self.scheme == "s3":
            raise ValueError(f"{self.uri()} is in an object store: it has no local path")
        if self.scheme == "pvc":
            base = f"{pvc_root.rstrip('/')}/pvc/{self.claim}"
            return f"{base}/{self.path}" if self.path else base
        return self.path

    def join(self, *parts: str) -> StorageLocation:
        extra = "/".join(p.strip("/") for p in parts if p.strip("/"))
        if not extra:
            return self
        path = f"{self.path.rstrip('/')}/{extra}" if self.path else extra
        if self.scheme == "file" and not path.startswith("/"):
            path = "/" + path
        return dataclasses.replace(self, path=path)

    def uri(self) -> str:
        if self.scheme in ("pvc", "s3"):
            base = f"{self.scheme}://{self.claim}"
            return f"{base}/{self.path}" if self.path else base
        return "file://" + self.path


@dataclasses.dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    description: str = ""
    priority: int = 0


@dataclasses.dataclass(frozen=True)
class CRDMeta:
    """What the CRD generator needs beyond the schema."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    printer_columns: tuple[PrinterColumn, ...]
    description: str
    categories: tuple[str, ...] = ("mlops",)


class ObjectMeta(pydantic.BaseModel):
    """The few metadata fields the reconcilers use; not part of the generated schema."""

    model_config = pydantic.ConfigDict(extra="ignore", populate_by_name=True)

    name: str
    namespace: str = "default"
    uid: str = ""
    generation: int = 0
    labels: dict[str, str] = pydantic.Field(default_factory=dict)
    annotations: dict[str, str] = pydantic.Field(default_factory=dict)
    creation_timestamp: str | None = pydantic.Field(default=None, alias="creationTimestamp")
    deletion_timestamp: str | None = pydantic.Field(default=None, alias="deletionTimestamp")


class Resource(pydantic.BaseModel):
    """Base of the four kinds' root models: ``crd`` says how the CRD is rendered.

    Subclasses declare ``spec`` and ``status`` fields; ``from_body`` validates what
    kopf hands a handler.
    """

    model_config = pydantic.ConfigDict(extra="ignore", populate_by_name=True)

    crd: ClassVar[CRDMeta]
    metadata: ObjectMeta

    @classmethod
    def from_body(cls, body: Any) -> Self:
        data = {
            "metadata": dict(body.get("metadata", {})),
            "spec": dict(body.get("spec", {}) or {}),
            "status": dict(body.get("status", {}) or {}),
        }
        return cls.model_validate(data)

    @classmethod
    def api_version(cls) -> str:
        return API_VERSION


def dig(obj: Mapping[str, Any], *path: str) -> Any:
    """``obj[path[0]][path[1]]...`` of a parsed JSON object, None where a step is missing or not an object."""
    cur: Any = obj
    for part in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur
