"""An in-memory stand-in for MLflow's REST API 2.0 on loopback (stdlib http.server), for unit tests.

It answers the calls the export makes with MLflow's shapes and error codes (404
RESOURCE_DOES_NOT_EXIST, 400 RESOURCE_ALREADY_EXISTS and INVALID_PARAMETER_VALUE), refuses a
changed param value and a local model-version source as MLflow does, and records every call
with its headers, so tests can count calls and see what was sent. The real server is
exercised by tests/integration/test_mlflow_export.py.
"""

from __future__ import annotations

import dataclasses
import http.server
import itertools
import json
import re
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

API = "/api/2.0/mlflow/"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts/"


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclasses.dataclass
class Call:
    method: str
    endpoint: str
    body: Any
    headers: dict[str, str]


@dataclasses.dataclass
class Store:
    experiments: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    models: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    versions: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    artifacts: dict[str, bytes] = dataclasses.field(default_factory=dict)
    calls: list[Call] = dataclasses.field(default_factory=list)
    # endpoint -> (HTTP status, error code) answered once by the next call of that endpoint
    fail_once: dict[str, tuple[int, str]] = dataclasses.field(default_factory=dict)
    fail_always: tuple[int, str] | None = None
    _ids: Iterator[int] = dataclasses.field(default_factory=lambda: itertools.count(1))

    def endpoints(self) -> list[str]:
        return [f"{c.method} {c.endpoint}" for c in self.calls]


def _tag_filter(text: str) -> dict[str, str]:
    return dict(re.findall(r"tags\.`([^`]+)` = '([^']*)'", text))


def _tags(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["key"]: t["value"] for t in items or []}


class _Handler(http.server.BaseHTTPRequestHandler):
    store: Store

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items()}
        if parsed.path.startswith(ARTIFACTS):
            endpoint = "mlflow-artifacts/artifacts"
            body: Any = raw
        elif parsed.path.startswith(API):
            endpoint = parsed.path[len(API) :]
            body = (
                json.loads(raw) if raw else {k: v[0] for k, v in urllib.parse.parse_qs(parsed.query).items()}
            )
        else:
            self._answer(404, {})
            return
        store = self.store
        store.calls.append(Call(method, endpoint, body, headers))
        try:
            if store.fail_always is not None:
                raise Refused(store.fail_always[0], store.fail_always[1], "failing on purpose")
            if endpoint in store.fail_once:
                status, code = store.fail_once.pop(endpoint)
                raise Refused(status, code, f"{endpoint} failing once on purpose")
            if endpoint == "mlflow-artifacts/artifacts":
                store.artifacts[urllib.parse.unquote(parsed.path[len(ARTIFACTS) :])] = raw
                self._answer(200, {})
                return
            self._answer(200, self._dispatch(method, endpoint, body))
        except Refused as exc:
            self._answer(exc.status, {"error_code": exc.code, "message": exc.message})

    def _dispatch(self, method: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        s = self.store
        if (method, endpoint) == ("GET", "experiments/get-by-name"):
            for exp in s.experiments.values():
                if exp["name"] == body["experiment_name"]:
                    return {"experiment": exp}
            raise Refused(404, "RESOURCE_DOES_NOT_EXIST", f"no experiment {body['experiment_name']}")
        if (method, endpoint) == ("POST", "experiments/create"):
            if any(e["name"] == body["name"] for e in s.experiments.values()):
                raise Refused(400, "RESOURCE_ALREADY_EXISTS", "experiment exists")
            eid = str(next(s._ids))
            s.experiments[eid] = {
                "experiment_id": eid,
                "name": body["name"],
                "lifecycle_stage": "active",
                "tags": body.get("tags") or [],
            }
            return {"experiment_id": eid}
        if (method, endpoint) == ("POST", "experiments/restore"):
            s.experiments[body["experiment_id"]]["lifecycle_stage"] = "active"
            return {}
        if (method, endpoint) == ("POST", "runs/create"):
            exp = s.experiments[body["experiment_id"]]
            if exp["lifecycle_stage"] != "active":
                raise Refused(400, "INVALID_PARAMETER_VALUE", "experiment is deleted")
            rid = uuid.uuid4().hex
            run = {
                "info": {
                    "run_id": rid,
                    "experiment_id": body["experiment_id"],
                    "run_name": body.get("run_name"),
                    "status": "RUNNING",
                    "start_time": body.get("start_time"),
                    "artifact_uri": f"mlflow-artifacts:/{body['experiment_id']}/{rid}/artifacts",
                },
                "data": {"tags": list(body.get("tags") or []), "params": [], "metrics": []},
            }
            s.runs[rid] = run
            return {"run": run}
        if (method, endpoint) == ("POST", "runs/search"):
            wanted = _tag_filter(body.get("filter") or "")
            found = [
                r
                for r in s.runs.values()
                if r["info"]["experiment_id"] in body["experiment_ids"]
                and all(_tags(r["data"]["tags"]).get(k) == v for k, v in wanted.items())
            ]
            return {"runs": found} if found else {}
        if (method, endpoint) == ("POST", "runs/log-batch"):
            run = s.runs[body["run_id"]]
            params = {p["key"]: p["value"] for p in run["data"]["params"]}
            for p in body.get("params") or []:
                if p["key"] in params and params[p["key"]] != p["value"]:
                    raise Refused(400, "INVALID_PARAMETER_VALUE", f"changing param {p['key']}")
                if p["key"] not in params:
                    run["data"]["params"].append(p)
                    params[p["key"]] = p["value"]
            for m in body.get("metrics") or []:
                if m not in run["data"]["metrics"]:
                    run["data"]["metrics"].append(m)
            tags = _tags(run["data"]["tags"]) | _tags(body.get("tags"))
            run["data"]["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
            return {}
        if (method, endpoint) == ("POST", "runs/update"):
            info = s.runs[body["run_id"]]["info"]
            info.update({"status": body["status"], "end_time": body.get("end_time")})
            return {"run_info": info}
        if (method, endpoint) == ("POST", "registered-models/create"):
            if body["name"] in s.models:
                raise Refused(400, "RESOURCE_ALREADY_EXISTS", "registered model exists")
            s.models[body["name"]] = {
                "name": body["name"],
                "description": body.get("description"),
                "tags": body.get("tags") or [],
                "aliases": [],
            }
            s.versions[body["name"]] = []
            return {"registered_model": s.models[body["name"]]}
        if (method, endpoint) == ("GET", "registered-models/get"):
            if body["name"] not in s.models:
                raise Refused(404, "RESOURCE_DOES_NOT_EXIST", "no such registered model")
            return {"registered_model": s.models[body["name"]]}
        if (method, endpoint) == ("GET", "model-versions/search"):
            match = re.fullmatch(r"name = '([^']*)' and run_id = '([^']*)'", body.get("filter") or "")
            assert match, body
            found = [v for v in s.versions.get(match.group(1), []) if v["run_id"] == match.group(2)]
            return {"model_versions": found} if found else {}
        if (method, endpoint) == ("POST", "model-versions/create"):
            if body["name"] not in s.models:
                raise Refused(404, "RESOURCE_DOES_NOT_EXIST", "no such registered model")
            source = urllib.parse.urlsplit(body["source"])
            if source.scheme in ("", "file"):
                raise Refused(
                    400, "INVALID_PARAMETER_VALUE", f"Invalid model version source: '{body['source']}'"
                )
            versions = s.versions[body["name"]]
            version = {
                "name": body["name"],
                "version": str(len(versions) + 1),
                "source": body["source"],
                "run_id": body.get("run_id"),
                "tags": body.get("tags") or [],
                "description": body.get("description"),
            }
            versions.append(version)
            return {"model_version": version}
        if (method, endpoint) == ("POST", "registered-models/alias"):
            model = s.models[body["name"]]
            model["aliases"] = [a for a in model["aliases"] if a["alias"] != body["alias"]] + [
                {"alias": body["alias"], "version": body["version"]}
            ]
            return {}
        if (method, endpoint) == ("DELETE", "registered-models/alias"):
            model = s.models[body["name"]]
            if not any(a["alias"] == body["alias"] for a in model["aliases"]):
                raise Refused(404, "RESOURCE_DOES_NOT_EXIST", "no such alias")
            model["aliases"] = [a for a in model["aliases"] if a["alias"] != body["alias"]]
            return {}
        raise Refused(404, "ENDPOINT_NOT_FOUND", f"{method} {endpoint}")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


@dataclasses.dataclass
class FakeMlflow:
    store: Store
    server: http.server.ThreadingHTTPServer

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def aliases(self, name: str) -> dict[str, str]:
        return {a["alias"]: a["version"] for a in self.store.models[name]["aliases"]}


def start() -> FakeMlflow:
    store = Store()
    handler = type("Handler", (_Handler,), {"store": store})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return FakeMlflow(store=store, server=server)
