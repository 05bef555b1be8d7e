"""A small typed client of MLflow's REST API 2.0: the calls the export makes, nothing more.

Why not the mlflow package: it brings Flask, SQLAlchemy, pandas and friends (hundreds of MB)
into the operator's image for a dozen JSON calls. The endpoints and fields are MLflow's
documented REST API (``/api/2.0/mlflow/...`` and the artifact proxy
``/api/2.0/mlflow-artifacts/artifacts/...``), which MLflow keeps stable across 2.x and 3.x.

Credentials are taken the way MLflow's own clients take them: ``MLFLOW_TRACKING_TOKEN`` (a
bearer token) or ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (basic auth), and
``MLFLOW_TRACKING_SERVER_CERT_PATH`` / ``MLFLOW_TRACKING_INSECURE_TLS`` for TLS. They never
appear in an error message, a repr or a log line: messages name the endpoint and the server's
answer, and the tracking URI only without its user info.

Standard library only (urllib): one request at a time, short timeouts, no retries here (the
export retries whole passes, with backoff).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

API = "/api/2.0/mlflow/"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts/"
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_MESSAGE_CHARS = 400

REASON_UNREACHABLE = "MLflowUnreachable"
REASON_AUTH = "MLflowAuthFailed"
REASON_REJECTED = "MLflowRejected"

ENV_TRACKING_URI = "MLOPS_MLFLOW_TRACKING_URI"
ENV_EXPERIMENT_PREFIX = "MLOPS_MLFLOW_EXPERIMENT_PREFIX"
ENV_TIMEOUT = "MLOPS_MLFLOW_TIMEOUT_SECONDS"
ENV_TOKEN = "MLFLOW_TRACKING_TOKEN"
ENV_USERNAME = "MLFLOW_TRACKING_USERNAME"
ENV_PASSWORD = "MLFLOW_TRACKING_PASSWORD"
ENV_CERT_PATH = "MLFLOW_TRACKING_SERVER_CERT_PATH"
ENV_INSECURE_TLS = "MLFLOW_TRACKING_INSECURE_TLS"
DEFAULT_EXPERIMENT_PREFIX = "mlops/"


@dataclasses.dataclass(frozen=True, repr=False)
class Config:
    """Where the tracking server is and how to reach it; fixed at the operator's startup."""

    tracking_uri: str
    experiment_prefix: str = DEFAULT_EXPERIMENT_PREFIX
    token: str | None = dataclasses.field(default=None, repr=False)
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    timeout_seconds: float = 10.0
    cert_path: str | None = None
    insecure_tls: bool = False

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.tracking_uri)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(
                f"{ENV_TRACKING_URI} must be an http:// or https:// URL of an MLflow tracking server, "
                f"got {display_uri(self.tracking_uri)!r}"
            )
        if self.timeout_seconds <= 0:
            raise ValueError(f"{ENV_TIMEOUT} must be positive")

    def __repr__(self) -> str:  # the URI may carry user info: shown without it, secrets never
        return (
            f"Config(tracking_uri={self.base_url!r}, experiment_prefix={self.experiment_prefix!r}, "
            f"username={self.username!r}, token={'***' if self.token else None}, "
            f"password={'***' if self.password else None}, timeout_seconds={self.timeout_seconds})"
        )

    @property
    def base_url(self) -> str:
        """The server's URL without user info, query or fragment (what requests go to)."""
        return display_uri(self.tracking_uri)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config | None:
        """The configuration the environment gives; None when no tracking URI is set."""
        uri = env.get(ENV_TRACKING_URI, "").strip()
        if not uri:
            return None
        parsed = urllib.parse.urlsplit(uri)
        username = env.get(ENV_USERNAME) or (
            urllib.parse.unquote(parsed.username) if parsed.username else None
        )
        password = env.get(ENV_PASSWORD) or (
            urllib.parse.unquote(parsed.password) if parsed.password else None
        )
        return cls(
            tracking_uri=display_uri(uri),  # the user info, if any, is kept as the credentials only
            experiment_prefix=env.get(ENV_EXPERIMENT_PREFIX, DEFAULT_EXPERIMENT_PREFIX),
            token=env.get(ENV_TOKEN) or None,
            username=username or None,
            password=password or None,
            timeout_seconds=float(env.get(ENV_TIMEOUT) or 10.0),
            cert_path=env.get(ENV_CERT_PATH) or None,
            insecure_tls=env.get(ENV_INSECURE_TLS, "").strip().lower() in {"1", "true", "yes"},
        )


def display_uri(uri: str) -> str:
    """``uri`` without user info, query or fragment: safe for a status, an Event or a log."""
    parsed = urllib.parse.urlsplit(uri.strip())
    host = parsed.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parsed.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path.rstrip("/"), "", ""))


class MlflowError(Exception):
    """A call that failed: ``reason`` is one CamelCase word for the condition, ``message`` says
    which call and what the server answered (never a credential)."""

    def __init__(
        self, reason: str, message: str, *, status: int | None = None, error_code: str | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status
        self.error_code = error_code


class NotFound(MlflowError):
    """RESOURCE_DOES_NOT_EXIST (HTTP 404)."""


class AlreadyExists(MlflowError):
    """RESOURCE_ALREADY_EXISTS."""


Opener = Callable[[urllib.request.Request, float], Any]


def _default_opener(context: ssl.SSLContext | None) -> Opener:
    handlers: list[urllib.request.BaseHandler] = []
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)

    def open_(request: urllib.request.Request, timeout: float) -> Any:
        return opener.open(request, timeout=timeout)

    return open_


def _tags(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in tags.items()]


class Client:
    """The REST calls of the export. Each returns the decoded JSON answer or raises ``MlflowError``."""

    def __init__(self, config: Config, *, opener: Opener | None = None) -> None:
        self.config = config
        context: ssl.SSLContext | None = None
        if config.base_url.startswith("https:"):
            context = ssl.create_default_context(cafile=config.cert_path)
            if config.insecure_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        self._open = opener or _default_opener(context)

    def __repr__(self) -> str:
        return f"Client({self.config.base_url!r})"

    # ---------------------------------------------------------------------------------------
    # transport
    # ---------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "mlops-operator"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        elif self.config.username is not None and self.config.password is not None:
            pair = f"{self.config.username}:{self.config.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        return headers

    def request(
        self,
        method: str,
        endpoint: str,
        *,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str | int] | None = None,
    ) -> dict[str, Any]:
        """One call of ``/api/2.0/mlflow/<endpoint>``."""
        url = self.config.base_url + API + endpoint
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None
        headers = self._headers()
        if body is not None:
            data = json.dumps(body, allow_nan=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        return self._send(method, url, endpoint, data, headers)

    def _send(
        self, method: str, url: str, what: str, data: bytes | None, headers: dict[str, str]
    ) -> dict[str, Any]:
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with self._open(request, self.config.timeout_seconds) as response:
                raw = response.read(MAX_RESPONSE_BYTES)
        except urllib.error.HTTPError as exc:
            raise _http_error(method, what, exc) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise MlflowError(
                REASON_UNREACHABLE,
                f"{method} {what}: {self.config.base_url} unreachable: {str(reason)[:MAX_MESSAGE_CHARS]}",
            ) from None
        if not raw.strip():
            return {}
        try:
            decoded = json.loads(raw)
        except ValueError:
            raise MlflowError(
                REASON_UNREACHABLE, f"{method} {what}: the answer is not JSON (is this an MLflow server?)"
            ) from None
        return decoded if isinstance(decoded, dict) else {}

    # ---------------------------------------------------------------------------------------
    # experiments
    # ---------------------------------------------------------------------------------------

    def get_experiment_by_name(self, name: str) -> dict[str, Any] | None:
        try:
            answer = self.request("GET", "experiments/get-by-name", query={"experiment_name": name})
        except NotFound:
            return None
        experiment: dict[str, Any] = answer.get("experiment") or {}
        return experiment

    def create_experiment(self, name: str, tags: Mapping[str, str]) -> str:
        answer = self.request("POST", "experiments/create", body={"name": name, "tags": _tags(tags)})
        return str(answer["experiment_id"])

    def restore_experiment(self, experiment_id: str) -> None:
        self.request("POST", "experiments/restore", body={"experiment_id": experiment_id})

    # ---------------------------------------------------------------------------------------
    # runs
    # ---------------------------------------------------------------------------------------

    def search_runs(self, experiment_id: str, filter_: str, *, max_results: int = 10) -> list[dict[str, Any]]:
        answer = self.request(
            "POST",
            "runs/search",
            body={
                "experiment_ids": [experiment_id],
                "filter": filter_,
                "max_results": max_results,
                "run_view_type": "ACTIVE_ONLY",
            },
        )
        runs: list[dict[str, Any]] = answer.get("runs") or []
        return runs

    def create_run(
        self, experiment_id: str, *, run_name: str, start_time: int, tags: Mapping[str, str]
    ) -> dict[str, Any]:
        answer = self.request(
            "POST",
            "runs/create",
            body={
                "experiment_id": experiment_id,
                "run_name": run_name,
                "start_time": start_time,
                "tags": _tags(tags),
            },
        )
        run: dict[str, Any] = answer["run"]
        return run

    def log_batch(
        self,
        run_id: str,
        *,
        params: Sequence[Mapping[str, str]] = (),
        metrics: Sequence[Mapping[str, Any]] = (),
        tags: Sequence[Mapping[str, str]] = (),
    ) -> None:
        self.request(
            "POST",
            "runs/log-batch",
            body={"run_id": run_id, "params": list(params), "metrics": list(metrics), "tags": list(tags)},
        )

    def update_run(self, run_id: str, *, status: str, end_time: int) -> None:
        self.request("POST", "runs/update", body={"run_id": run_id, "status": status, "end_time": end_time})

    def upload_artifact(self, artifact_uri: str, path: str, content: bytes, content_type: str) -> bool:
        """PUT ``content`` as ``<artifact_uri>/<path>`` through the server's artifact proxy; False
        (nothing sent) when the run's artifacts are not proxied (``mlflow-artifacts:`` URIs are:
        the server holds the storage credentials, the operator never does)."""
        parsed = urllib.parse.urlsplit(artifact_uri)
        if parsed.scheme != "mlflow-artifacts":
            return False
        root = parsed.path.strip("/")
        url = self.config.base_url + ARTIFACTS + urllib.parse.quote(f"{root}/{path}")
        headers = self._headers() | {"Content-Type": content_type}
        self._send("PUT", url, "mlflow-artifacts/artifacts", content, headers)
        return True

    # ---------------------------------------------------------------------------------------
    # the model registry
    # ---------------------------------------------------------------------------------------

    def create_registered_model(self, name: str, *, description: str, tags: Mapping[str, str]) -> bool:
        """Create it; False when it exists already."""
        try:
            self.request(
                "POST",
                "registered-models/create",
                body={"name": name, "description": description, "tags": _tags(tags)},
            )
        except AlreadyExists:
            return False
        return True

    def get_registered_model(self, name: str) -> dict[str, Any] | None:
        try:
            answer = self.request("GET", "registered-models/get", query={"name": name})
        except NotFound:
            return None
        model: dict[str, Any] = answer.get("registered_model") or {}
        return model

    def search_model_versions(self, filter_: str, *, max_results: int = 10) -> list[dict[str, Any]]:
        answer = self.request(
            "GET", "model-versions/search", query={"filter": filter_, "max_results": max_results}
        )
        versions: list[dict[str, Any]] = answer.get("model_versions") or []
        return versions

    def create_model_version(
        self,
        name: str,
        *,
        source: str,
        run_id: str,
        tags: Mapping[str, str],
        description: str = "",
    ) -> dict[str, Any]:
        answer = self.request(
            "POST",
            "model-versions/create",
            body={
                "name": name,
                "source": source,
                "run_id": run_id,
                "tags": _tags(tags),
                "description": description,
            },
        )
        version: dict[str, Any] = answer["model_version"]
        return version

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.request(
            "POST", "registered-models/alias", body={"name": name, "alias": alias, "version": version}
        )

    def delete_alias(self, name: str, alias: str) -> None:
        try:
            self.request("DELETE", "registered-models/alias", body={"name": name, "alias": alias})
        except NotFound:
            return


def _http_error(method: str, what: str, exc: urllib.error.HTTPError) -> MlflowError:
    code: str | None = None
    text = ""
    try:
        raw = exc.read(64 * 1024)
        payload = json.loads(raw) if raw else {}
        if isinstance(payload, dict):
            code = str(payload.get("error_code") or "") or None
            text = str(payload.get("message") or "")
    except (OSError, ValueError):
        pass
    message = f"{method} {what}: HTTP {exc.code}" + (f" {code}" if code else "")
    if text:
        message += f": {text[:MAX_MESSAGE_CHARS]}"
    status = int(exc.code)
    if code == "RESOURCE_DOES_NOT_EXIST" or (status == 404 and code is None):
        return NotFound(REASON_REJECTED, message, status=status, error_code=code)
    if code == "RESOURCE_ALREADY_EXISTS":
        return AlreadyExists(REASON_REJECTED, message, status=status, error_code=code)
    if status in (401, 403):
        return MlflowError(REASON_AUTH, message, status=status, error_code=code)
    if status >= 500 or status == 429:
        return MlflowError(REASON_UNREACHABLE, message, status=status, error_code=code)
    return MlflowError(REASON_REJECTED, message, status=status, error_code=code)
