"""The chart's prometheus-adapter rules as an HPA meets them, for the tests that tie them to both ends.

The HPA names a custom metric (``HPA_METRICS``); a rule of
``charts/mlops-operator/files/prometheus-adapter-values.yaml`` serves that name from a series the
model server exports. ``pods_query`` renders a rule's ``metricsQuery`` the way prometheus-adapter
does for the pods of one namespace (``<<.Series>>``, ``<<.LabelMatchers>>``, ``<<.GroupBy>>``),
so a test can run exactly that PromQL against a real Prometheus.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Sequence

import yaml

RULES_FILE = (
    pathlib.Path(__file__).resolve().parents[1]
    / "charts"
    / "mlops-operator"
    / "files"
    / "prometheus-adapter-values.yaml"
)
_SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{")
_ENDPOINT_FILTER = re.compile(r'endpoint=~"([^"]*)"')


@dataclasses.dataclass(frozen=True)
class Rule:
    series: str  # the exported series the rule reads (the metric of its seriesQuery)
    name: str  # the custom metric it serves to the HPA
    metrics_query: str
    resources: dict[str, str]  # series label -> Kubernetes resource

    @property
    def endpoint_filter(self) -> re.Pattern[str] | None:
        """The ``endpoint`` regex of the query (PromQL regexes are anchored: use ``fullmatch``)."""
        found = _ENDPOINT_FILTER.search(self.metrics_query)
        return re.compile(found.group(1)) if found else None


def rules() -> list[Rule]:
    values = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    out = []
    for raw in values["rules"]["custom"]:
        found = _SERIES.match(raw["seriesQuery"])
        assert found, raw["seriesQuery"]
        series = found.group(1)
        assert re.fullmatch(raw["name"]["matches"], series), (raw["name"], series)
        overrides = raw["resources"]["overrides"]
        out.append(
            Rule(
                series=series,
                name=raw["name"]["as"],
                metrics_query=raw["metricsQuery"],
                resources={label: str(v["resource"]) for label, v in overrides.items()},
            )
        )
    return out


def rule_for(metric: str) -> Rule:
    found = [r for r in rules() if r.name == metric]
    assert len(found) == 1, f"{len(found)} prometheus-adapter rules serve {metric} in {RULES_FILE.name}"
    return found[0]


def pods_query(rule: Rule, namespace: str, pods: Sequence[str]) -> str:
    """The PromQL prometheus-adapter sends for ``metric`` of ``pods`` in ``namespace``."""
    matchers = f'namespace="{namespace}",pod=~"{"|".join(pods)}"'
    query = (
        rule.metrics_query.replace("<<.Series>>", rule.series)
        .replace("<<.LabelMatchers>>", matchers)
        .replace("<<.GroupBy>>", "pod")
    )
    assert "<<" not in query, query
    return query
