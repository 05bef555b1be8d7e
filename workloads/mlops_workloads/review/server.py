"""The review server's HTTP side: one page and a small JSON API over a ``backlog.Backlog``.

Low traffic (a few people labelling), so the standard library's threading server is enough.

- ``GET /``: the page (``page.html``, one self-contained file: no CDN, inline CSS and JS under
  a per-response CSP nonce);
- ``GET /api/info``: the deployment, and the reviewer an auth proxy named (if any);
- ``GET /api/pending?limit=&offset=&all=1``: rows waiting, newest first (``all``: every captured
  row, not only the low-confidence ones);
- ``GET /api/stats[?all=1]``: waiting, labelled, by action and by reviewer;
- ``POST /api/labels`` ``{"items": [{requestId, row, action, label}], "reviewer"?}``: saves one
  batch; 400 with ``{"error": ...}`` when any item is wrong (nothing is written then);
- ``GET /healthz``.

Who labels: the first of ``user_headers`` (``X-Forwarded-User``, ``X-Remote-User``: what
oauth2-proxy and Apache/nginx auth modules set) present on the request, else the body's
``reviewer`` (the page asks for a name once). The server trusts those headers, so it must only
be reachable through the proxy that sets them (or by people allowed to label under any name).
A POST must be ``application/json``: a cross-site form cannot send that without a preflight,
which this server never answers.
"""

from __future__ import annotations

import http.server
import importlib.resources
import json
import logging
import secrets
import urllib.parse
from typing import Any

from mlops_workloads import runtime
from mlops_workloads.review import backlog

log = logging.getLogger("mlops_workloads.review")

MAX_BODY = 1 << 20
MAX_LIMIT = 500
IDLE_SECONDS = 300  # a keep-alive connection idle this long is closed (the CLI reconnects)
NONCE = "__NONCE__"
PAGE = importlib.resources.files("mlops_workloads.review").joinpath("page.html").read_text(encoding="utf-8")


class Problem(Exception):
    """An HTTP error with a message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        *,
        backlog: backlog.Backlog,
        deployment: str,
        namespace: str = "",
        user_headers: tuple[str, ...] = (),
    ) -> None:
        super().__init__(address, Handler)
        self.backlog = backlog
        self.deployment = deployment
        self.namespace = namespace
        self.user_headers = user_headers

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    timeout = IDLE_SECONDS
    _raw = b""

    # -- dispatch -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        routes = {
            ("GET", "/"): self._page,
            ("GET", "/healthz"): lambda: self._json(200, {"ok": True}),
            ("GET", "/api/info"): self._info,
            ("GET", "/api/pending"): lambda: self._pending(query),
            ("GET", "/api/stats"): lambda: self._json(
                200, self.server.backlog.stats(everything=_flag(query))
            ),
            ("POST", "/api/labels"): self._labels,
        }
        route = routes.get((method, url.path))
        try:
            self._raw = self._read_body() if method == "POST" else b""
            if route is None:
                known = {path for _, path in routes}
                raise Problem(405 if url.path in known else 404, f"no {method} {url.path}")
            route()
        except Problem as exc:
            self._json(exc.status, {"error": exc.message})
        except backlog.Invalid as exc:
            self._json(400, {"error": str(exc)})
        except runtime.WorkloadError as exc:  # the store cannot be read or written now
            log.warning("review: %s: %s", exc.reason, exc.message)
            self._json(503, {"error": exc.message, "reason": exc.reason})
        except Exception:
            log.exception("review: %s %s failed", method, url.path)
            self._json(500, {"error": "internal error; see the review server's log"})

    # -- endpoints ----------------------------------------------------------------------------

    def _page(self) -> None:
        nonce = secrets.token_urlsafe(16)
        body = PAGE.replace(NONCE, nonce).encode()
        csp = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        )
        self._send(200, body, "text/html; charset=utf-8", {"Content-Security-Policy": csp})

    def _info(self) -> None:
        user = self._header_user()
        self._json(
            200,
            {
                "deployment": self.server.deployment,
                "namespace": self.server.namespace,
                "reviewer": user,
                "authenticated": user is not None,
            },
        )

    def _pending(self, query: dict[str, list[str]]) -> None:
        limit = _int(query, "limit", 50, low=1, high=MAX_LIMIT)
        offset = _int(query, "offset", 0, low=0, high=1 << 31)
        everything = _flag(query)
        page = self.server.backlog.pending(limit=limit, offset=offset, everything=everything)
        self._json(
            200, {"rows": page.rows, "total": page.total, "offset": offset, "limit": limit, "all": everything}
        )

    def _labels(self) -> None:
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise Problem(415, "send the labels as application/json")
        try:
            body = json.loads(self._raw) if self._raw else None
        except ValueError as exc:
            raise Problem(400, f"the body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise Problem(400, 'the body must be {"items": [...], "reviewer": "..."}')
        unknown = set(body) - {"items", "reviewer"}
        if unknown:
            raise Problem(400, f"unknown field(s) {', '.join(sorted(unknown))}")
        reviewer = self._header_user() or backlog.check_reviewer(body.get("reviewer"))
        saved = self.server.backlog.save(body.get("items"), reviewer=reviewer)
        self._json(
            200,
            {
                "saved": [
                    {"requestId": s.request_id, "row": s.row, "action": s.action, "label": s.label}
                    for s in saved
                ],
                "reviewer": saved[0].reviewer,
            },
        )

    # -- helpers ------------------------------------------------------------------------------

    def _header_user(self) -> str | None:
        for name in self.server.user_headers:
            value = self.headers.get(name)
            if value and value.strip():
                return backlog.check_reviewer(value)
        return None

    def _read_body(self) -> bytes:
        """The request's body (read whole, so the connection stays usable after an error)."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise Problem(411, "send a Content-Length (no chunked bodies)")
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            self.close_connection = True
            raise Problem(400, "bad Content-Length") from None
        if length > MAX_BODY or length < 0:
            self.close_connection = True  # the rest of it is never read
            raise Problem(413, f"the body is over {MAX_BODY} bytes")
        return self.rfile.read(length) if length else b""

    def _json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()
        self._send(status, body, "application/json", {"Cache-Control": "no-store"})

    def _send(self, status: int, body: bytes, kind: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


def _int(query: dict[str, list[str]], name: str, default: int, *, low: int, high: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise Problem(400, f"{name} must be an integer") from None
    if not low <= value <= high:
        raise Problem(400, f"{name} must be between {low} and {high}")
    return value


def _flag(query: dict[str, list[str]]) -> bool:
    return (query.get("all") or ["0"])[-1].lower() in {"1", "true", "yes"}
