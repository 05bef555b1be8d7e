"""Render the CustomResourceDefinitions from the pydantic models.

The models in ``mlops_operator.api`` are the single source of truth for the API
(gafaelfawr's two hand-kept schema sources drifted apart; we do not keep two).
``python -m mlops_operator.crdgen --out crds --chart-out charts/mlops-operator/crds``
turns each kind's pydantic JSON schema into a *structural* OpenAPI v3 schema the
apiserver accepts, wraps it in an ``apiextensions.k8s.io/v1`` CRD and writes one
file per kind; ``--check`` compares instead of writing, the way kueue's
``make verify`` keeps generated files honest.

The work is split by responsibility:

- :mod:`mlops_operator.crdgen.schema`: JSON Schema (pydantic) → structural schema.
- :mod:`mlops_operator.crdgen.checks`: invariants the apiserver would enforce,
  checked here so a bad model fails in a unit test, not at install time.
- :mod:`mlops_operator.crdgen.crd`: discovery of the kinds, the CRD around the
  schema, and the stable YAML rendering.
"""
