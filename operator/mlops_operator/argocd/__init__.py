"""Argo CD health checks for the five mlops.dev kinds.

Argo CD knows nothing of custom resources' health unless told: without a check, an Application
holding a failed TrainingJob shows Healthy. The checks are Lua (Argo CD runs them in gopher-lua,
Lua 5.1) kept as data files in ``health/``: ``_common.lua`` (helpers and the "has the operator
seen this generation yet" rule) is prepended to each kind's script, so every installed script is
self-contained, as Argo CD requires. ``python -m mlops_operator.argocd`` prints the
``argocd-cm`` entries (``resource.customizations.health.mlops.dev_<Kind>``).
"""

from __future__ import annotations

import importlib.resources

import yaml

GROUP = "mlops.dev"
KINDS: tuple[str, ...] = ("Dataset", "TrainingJob", "HyperparameterSweep", "Model", "ModelDeployment")


def _read(name: str) -> str:
    return importlib.resources.files(__package__).joinpath("health", name).read_text(encoding="utf-8")


def health_script(kind: str) -> str:
    """The complete Lua health script of ``kind`` (prelude + the kind's rules)."""
    if kind not in KINDS:
        raise ValueError(f"no health check for {kind!r}; kinds: {', '.join(KINDS)}")
    return _read("_common.lua").rstrip("\n") + "\n\n" + _read(f"{kind}.lua")


def config_key(kind: str) -> str:
    """The ``argocd-cm`` key Argo CD reads the health check of ``kind`` from."""
    return f"resource.customizations.health.{GROUP}_{kind}"


def argocd_cm_data() -> dict[str, str]:
    """``argocd-cm`` data entries for every kind."""
    return {config_key(kind): health_script(kind) for kind in KINDS}


class _Literal(str):
    """A string dumped in YAML's literal block style (``|``), so the Lua stays readable."""


def _literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="|")


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Literal, _literal)


def render(fmt: str = "configmap", namespace: str = "argocd") -> str:
    """The checks as an ``argocd-cm`` patch (``configmap``) or argo-cd chart values (``helm-values``)."""
    data = {key: _Literal(script) for key, script in argocd_cm_data().items()}
    if fmt == "configmap":
        doc: dict[str, object] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "argocd-cm",
                "namespace": namespace,
                "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"},
            },
            "data": data,
        }
    elif fmt == "helm-values":
        doc = {"configs": {"cm": data}}
    else:
        raise ValueError(f"unknown format {fmt!r}: configmap or helm-values")
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1000)
