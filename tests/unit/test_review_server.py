"""The review server over HTTP (in-process, loopback): the page, the JSON API, who the reviewer
is (an auth proxy's header, else the body), and errors that keep the connection usable."""

from __future__ import annotations

import contextlib
import http.client
import json
import pathlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from mlops_operator.api import modeldeployment as md_api
from mlops_workloads import labels, runtime, storage
from mlops_workloads.review import __main__ as review_main
from mlops_workloads.review import backlog, demo, server


@contextlib.contextmanager
def running(
    uri: str, *, user_headers: tuple[str, ...] = md_api.REVIEW_USER_HEADERS
) -> Iterator[server.Server]:
    httpd = server.Server(
        ("127.0.0.1", 0),
        backlog=backlog.Backlog(storage.open_store(uri), refresh_seconds=0.0),
        deployment="iris",
        namespace="ml",
        user_headers=user_headers,
    )
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def call(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, http.client.HTTPResponse]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    sent = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers={**sent, **(headers or {})})
    response = conn.getresponse()
    payload = response.read()
    kind = response.getheader("Content-Type") or ""
    return response.status, json.loads(payload) if kind.startswith("application/json") else payload, response


@pytest.fixture
def uri(tmp_path: pathlib.Path) -> str:
    root = f"file://{tmp_path}/root"
    demo.seed(root, requests=6)
    return root


def test_the_page_is_one_self_contained_file_under_a_nonce(uri: str) -> None:
    with running(uri) as httpd:
        conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=10)
        status, page, response = call(conn, "GET", "/")
        assert status == 200 and response.getheader("Content-Type") == "text/html; charset=utf-8"
        html = page.decode()
        csp = response.getheader("Content-Security-Policy") or ""
        nonce = re.search(r"'nonce-([^']+)'", csp)
        assert nonce and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert html.count(f'nonce="{nonce.group(1)}"') == 2 and server.NONCE not in html
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # no CDN, nothing remote
        assert 'id="done-count"' in html and 'id="reviewer-name"' in html
        assert response.getheader("X-Frame-Options") == "DENY"
        _, _, response2 = call(conn, "GET", "/")  # a fresh nonce per response, same connection
        assert response2.getheader("Content-Security-Policy") != csp


def test_pending_stats_and_labels_over_http(uri: str) -> None:
    with running(uri) as httpd:
        conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=10)
        assert call(conn, "GET", "/healthz")[:2] == (200, {"ok": True})
        status, info, _ = call(conn, "GET", "/api/info")
        assert info == {"deployment": "iris", "namespace": "ml", "reviewer": None, "authenticated": False}
        status, page, response = call(conn, "GET", "/api/pending?limit=2")
        assert status == 200 and response.getheader("Cache-Control") == "no-store"
        assert page["limit"] == 2 and page["offset"] == 0 and page["all"] is False
        assert len(page["rows"]) == 2 and page["total"] >= 2
        every = call(conn, "GET", "/api/pending?all=1&limit=500")[1]
        assert every["total"] == 12 and every["all"] is True
        row = page["rows"][0]
        item = {"requestId": row["requestId"], "row": row["row"], "action": "confirmed"}
        status, saved, _ = call(conn, "POST", "/api/labels", {"items": [item], "reviewer": "ana"})
        assert status == 200
        assert saved == {"saved": [{**item, "label": row["predictionLabel"]}], "reviewer": "ana"}
        stats = call(conn, "GET", "/api/stats")[1]
        assert stats["waiting"] == page["total"] - 1 and stats["byReviewer"] == {"ana": 1}
        assert call(conn, "GET", "/api/stats?all=1")[1]["waiting"] == 11
        waiting = call(conn, "GET", "/api/pending?limit=500")[1]["rows"]
        assert (row["requestId"], row["row"]) not in {(r["requestId"], r["row"]) for r in waiting}


def test_the_auth_proxy_s_header_names_the_reviewer(uri: str) -> None:
    with running(uri) as httpd:
        conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=10)
        proxy = {"X-Forwarded-User": "ana@example.org"}
        assert call(conn, "GET", "/api/info", headers=proxy)[1]["reviewer"] == "ana@example.org"
        row = call(conn, "GET", "/api/pending")[1]["rows"][0]
        item = {"requestId": row["requestId"], "row": row["row"], "action": "skipped"}
        status, saved, _ = call(
            conn, "POST", "/api/labels", {"items": [item], "reviewer": "mallory"}, headers=proxy
        )
        assert status == 200 and saved["reviewer"] == "ana@example.org"
        status, _, _ = call(conn, "POST", "/api/labels", {"items": [item]}, headers={"X-Remote-User": "bo"})
        assert status == 200
        (latest,) = labels.latest(labels.read(storage.open_store(uri))).to_pylist()
        assert latest["reviewer"] == "bo"  # the newest decision, by the second header
    with running(uri, user_headers=()) as httpd:  # no proxy in front: headers are not trusted
        conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=10)
        info = call(conn, "GET", "/api/info", headers={"X-Forwarded-User": "mallory"})[1]
        assert info["authenticated"] is False
        status, body, _ = call(
            conn, "POST", "/api/labels", {"items": [item]}, headers={"X-Forwarded-User": "m"}
        )
        assert status == 400 and "reviewer" in body["error"]


def test_errors_say_what_is_wrong_and_keep_the_connection(uri: str) -> None:
    with running(uri) as httpd:
        conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=10)
        row = call(conn, "GET", "/api/pending")[1]["rows"][0]
        bad = {"requestId": row["requestId"], "row": row["row"], "action": "corrected", "label": "daisy"}
        cases: list[tuple[str, str, Any, dict[str, str], bytes | None, int, str]] = [
            (
                "POST",
                "/api/labels",
                {"items": [bad], "reviewer": "a"},
                {},
                None,
                400,
                "not one of the classes",
            ),
            ("POST", "/api/labels", None, {"Content-Type": "text/plain"}, b"x", 415, "application/json"),
            ("POST", "/api/labels", None, {}, b"{not json", 400, "not JSON"),
            ("POST", "/api/labels", [1], {}, None, 400, "the body must be"),
            ("POST", "/api/labels", {"items": [], "extra": 1}, {}, None, 400, "unknown field(s) extra"),
            ("GET", "/api/pending?limit=0", None, {}, None, 400, "limit must be between 1 and 500"),
            ("GET", "/api/pending?offset=x", None, {}, None, 400, "offset must be an integer"),
            ("GET", "/etc/passwd", None, {}, None, 404, "no GET /etc/passwd"),
            ("GET", "/api/labels", None, {}, None, 405, "no GET /api/labels"),
        ]
        for method, path, body, headers, raw, code, message in cases:
            status, payload, _ = call(conn, method, path, body, headers=headers, raw=raw)
            assert (status, message in payload["error"]) == (code, True), (path, payload)
        assert call(conn, "GET", "/healthz")[0] == 200  # the same connection still works
        assert labels.files(storage.open_store(uri)) == []


def test_a_body_too_large_is_refused_and_the_connection_closed(uri: str) -> None:
    with running(uri) as httpd:
        conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=10)
        conn.putrequest("POST", "/api/labels")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(server.MAX_BODY + 1))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413 and response.getheader("Connection") == "close"


def test_an_unreachable_store_is_a_503_with_its_reason(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with running(uri) as httpd:

        def down(**_: Any) -> None:
            raise runtime.WorkloadError("StorageUnreadable", "cannot list s3://b/x: timed out")

        monkeypatch.setattr(httpd.backlog, "pending", down)
        conn = http.client.HTTPConnection("127.0.0.1", httpd.port, timeout=10)
        status, body, _ = call(conn, "GET", "/api/pending")
        assert status == 503 and body == {
            "error": "cannot list s3://b/x: timed out",
            "reason": "StorageUnreadable",
        }


def test_the_config_comes_from_mlops_config_and_flags(tmp_path: pathlib.Path) -> None:
    config = md_api.ReviewConfig(uri=f"file://{tmp_path}", deployment="iris", port=9000)
    env = {"MLOPS_CONFIG": json.dumps(config.to_api())}
    loaded = review_main.load_config(review_main.parse_args(["--port", "0", "--no-user-headers"]), env)
    assert (loaded.uri, loaded.deployment, loaded.port, loaded.user_headers) == (config.uri, "iris", 0, [])
    assert review_main.load_config(review_main.parse_args([]), env).user_headers == list(
        md_api.REVIEW_USER_HEADERS
    )
    with pytest.raises(runtime.WorkloadError, match="give --uri"):
        review_main.load_config(review_main.parse_args([]), {})
    with pytest.raises(runtime.WorkloadError, match="uri"):
        review_main.load_config(review_main.parse_args(["--uri", "ftp://x"]), {})
    httpd = review_main.build(
        review_main.load_config(review_main.parse_args(["--uri", f"file://{tmp_path}", "--port", "0"]), {})
    )
    try:
        assert httpd.port > 0
    finally:
        httpd.server_close()
