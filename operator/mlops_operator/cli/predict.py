"""``mlops predict DEPLOYMENT rows.csv``: score a CSV with a ModelDeployment's model.

Rows go to the KServe v1 endpoint (``POST /v1/models/<name>:predict`` with ``{"instances":
[{column: value}, ...]}``) in batches; the answer comes back as the CSV's rows plus
``prediction`` and, for classifiers, ``confidence`` (top class probability) and
``low_confidence``. Columns the model does not take (a target column, ids) are dropped after
reading the model's metadata (``GET /v2/models/<name>``), and said so on stderr.

Where the model is reached: ``--url`` when given; the ModelDeployment's in-cluster
``status.url`` when the CLI runs inside the cluster; otherwise a port-forward through the
API server to a ready pod behind the deployment's Service (what ``kubectl port-forward`` does).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import http.client
import io
import json
import os
import re
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any, TextIO

from mlops_operator.cli import kube

_INT = re.compile(r"^[+-]?\d+$")


def parse_value(text: str) -> Any:
    """A CSV cell as JSON: '' → null, integers, floats, true/false, else the string."""
    stripped = text.strip()
    if stripped == "":
        return None
    if _INT.match(stripped):
        return int(stripped)
    try:
        value = float(stripped)
    except ValueError:
        lowered = stripped.lower()
        if lowered in {"true", "false"}:
            return lowered == "true"
        return text
    return value


def read_rows(stream: TextIO) -> tuple[list[str], list[dict[str, Any]]]:
    reader = csv.DictReader(stream)
    if not reader.fieldnames:
        raise kube.CliError("the CSV has no header row")
    columns = [c.strip() for c in reader.fieldnames]
    rows = [{c.strip(): parse_value(v or "") for c, v in row.items() if c is not None} for row in reader]
    if not rows:
        raise kube.CliError("the CSV has no rows")
    return columns, rows


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where a model server answers: scheme://host:port, and the model's name in URLs."""

    base: str
    model: str


def endpoint_from_status(url: str, fallback_model: str) -> tuple[str, str, int, str]:
    """(service, namespace, port, model) from an in-cluster URL such as
    ``http://iris.team-a.svc.cluster.local/v2/models/iris`` or ``http://iris.team-a:8080``."""
    parsed = urllib.parse.urlparse(url)
    host = parsed.hostname or ""
    labels = host.split(".")
    service = labels[0]
    namespace = labels[1] if len(labels) > 1 else ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    match = re.search(r"/models/([^/:]+)", parsed.path)
    return service, namespace, port, match.group(1) if match else fallback_model


class Client:
    """One keep-alive HTTP/1.1 connection to the model server (over TCP or a port-forward socket)."""

    def __init__(self, base: str, *, sock: socket.socket | None = None, timeout: float = 60.0) -> None:
        parsed = urllib.parse.urlparse(base)
        if parsed.scheme not in {"http", "https"} or not parsed.hostname:
            raise kube.CliError(f"--url must be http(s)://host[:port], not {base!r}")
        cls = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        self.prefix = parsed.path.rstrip("/")
        self.conn = cls(parsed.hostname, parsed.port, timeout=timeout)
        if sock is not None:
            self.conn.sock = sock

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            self.conn.request(method, self.prefix + path, body=data, headers=headers)
            response = self.conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise kube.CliError(f"the model server did not answer {method} {path}: {exc}") from exc
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return response.status, payload

    def close(self) -> None:
        self.conn.close()


def model_inputs(client: Client, model: str) -> list[str] | None:
    status, payload = client.request("GET", f"/v2/models/{model}")
    if status != 200 or not isinstance(payload, dict):
        return None
    return [str(i.get("name")) for i in payload.get("inputs") or [] if isinstance(i, dict)]


def predict(
    client: Client, model: str, rows: list[dict[str, Any]], *, batch_size: int
) -> list[dict[str, Any]]:
    """One result per row: prediction, and confidence / low_confidence for classifiers."""
    results: list[dict[str, Any]] = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        status, payload = client.request("POST", f"/v1/models/{model}:predict", {"instances": batch})
        if status != 200 or not isinstance(payload, dict):
            detail = payload.get("error") if isinstance(payload, dict) else payload
            raise kube.CliError(f"rows {start + 1}-{start + len(batch)}: HTTP {status}: {detail}")
        predictions = payload.get("predictions") or []
        probabilities = payload.get("probabilities")
        low = payload.get("lowConfidence")
        for i, prediction in enumerate(predictions):
            out: dict[str, Any] = {"prediction": prediction}
            if probabilities is not None:
                out["confidence"] = max(probabilities[i])
            if low is not None:
                out["low_confidence"] = bool(low[i])
            results.append(out)
        if len(predictions) != len(batch):
            raise kube.CliError(f"the server answered {len(predictions)} predictions for {len(batch)} rows")
    return results


def write(
    columns: list[str], rows: list[dict[str, Any]], results: list[dict[str, Any]], fmt: str, out: TextIO
) -> None:
    if fmt == "json":
        for row, result in zip(rows, results, strict=True):
            out.write(json.dumps({**row, **result}) + "\n")
        return
    extra = [k for k in ("prediction", "confidence", "low_confidence") if any(k in r for r in results)]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*columns, *extra])
    for row, result in zip(rows, results, strict=True):
        writer.writerow([_cell(row.get(c)) for c in columns] + [_cell(result.get(k)) for k in extra])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@contextlib.contextmanager
def connect_to_deployment(
    session: kube.Session, name: str, model_name: str | None
) -> Iterator[tuple[Client, str]]:
    """A client for the ModelDeployment ``name`` (in-cluster URL or a port-forward) and its model name."""
    deployment = session.get("ModelDeployment", name)
    status = deployment.get("status") or {}
    namespace = kube.namespace_of(deployment)
    url = status.get("url")
    service, port, model = name, 80, model_name or name
    if url:
        service, ns, port, found = endpoint_from_status(str(url), model_name or name)
        namespace = ns or namespace
        model = model_name or found
    if os.environ.get("KUBERNETES_SERVICE_HOST") and url:
        parsed = urllib.parse.urlparse(str(url))
        client = Client(f"{parsed.scheme}://{parsed.netloc}")
        try:
            yield client, model
        finally:
            client.close()
        return
    pod, target_port = _ready_pod(session, service, namespace, port)
    from kubernetes import client as k8s_client
    from kubernetes import stream

    api = k8s_client.CoreV1Api(session.kube.api_client)
    try:
        forward = stream.portforward(
            api.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(target_port)
        )
    except Exception as exc:
        raise kube.CliError(f"port-forward to {namespace}/{pod}:{target_port} failed: {exc}") from exc
    client = Client("http://127.0.0.1", sock=forward.socket(target_port))
    try:
        yield client, model
    finally:
        client.close()
        forward.close()


def _ready_pod(session: kube.Session, service: str, namespace: str, port: int) -> tuple[str, int]:
    svc = session.kube.get("v1", "Service", service, namespace)
    if svc is None:
        raise kube.CliError(f"Service {namespace}/{service} not found (is the ModelDeployment Ready?)")
    spec = svc.get("spec") or {}
    selector = spec.get("selector") or {}
    if not selector:
        raise kube.CliError(f"Service {namespace}/{service} has no selector")
    ports = spec.get("ports") or []
    chosen = next((p for p in ports if p.get("port") == port), ports[0] if ports else {})
    target: Any = chosen.get("targetPort", chosen.get("port", port))
    pods = session.kube.list(
        "v1", "Pod", namespace, label_selector=",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    )
    for pod in pods:
        status = pod.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        )
        if (
            status.get("phase") == "Running"
            and ready
            and not (pod.get("metadata") or {}).get("deletionTimestamp")
        ):
            return kube.name_of(pod), _resolve_port(pod, target)
    raise kube.CliError(f"no ready pod behind Service {namespace}/{service}")


def _resolve_port(pod: dict[str, Any], target: Any) -> int:
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target:
                return int(port["containerPort"])
    raise kube.CliError(f"pod {kube.name_of(pod)} has no port named {target!r}")


def run(
    *,
    session: kube.Session | None,
    deployment: str,
    csv_path: str,
    url: str | None,
    model_name: str | None,
    batch_size: int,
    output_format: str,
    out: TextIO,
    err: TextIO,
) -> int:
    if csv_path == "-":
        raise kube.CliError("give a CSV file (stdin is not supported)")
    try:
        with open(csv_path, encoding="utf-8", newline="") as fh:
            columns, rows = read_rows(io.StringIO(fh.read()))
    except OSError as exc:
        raise kube.CliError(f"cannot read {csv_path}: {exc}") from exc
    if url:
        client = Client(url)
        context: contextlib.AbstractContextManager[tuple[Client, str]] = contextlib.nullcontext(
            (client, model_name or deployment)
        )
    else:
        if session is None:
            raise kube.CliError("no cluster session (give --url)")
        context = connect_to_deployment(session, deployment, model_name)
    with context as (client, model):
        try:
            inputs = model_inputs(client, model)
            if inputs:
                missing = [c for c in inputs if c not in columns]
                if missing:
                    raise kube.CliError(f"the CSV lacks the model's input column(s): {', '.join(missing)}")
                dropped = [c for c in columns if c not in inputs]
                if dropped:
                    err.write(
                        f"mlops predict: not sent (the model does not take them): {', '.join(dropped)}\n"
                    )
                sent = [{c: row.get(c) for c in inputs} for row in rows]
            else:
                sent = rows
            results = predict(client, model, sent, batch_size=batch_size)
        finally:
            client.close()
    write(columns, rows, results, output_format, out)
    return 0
