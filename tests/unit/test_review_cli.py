"""``mlops review``: the terminal flow against a review server on loopback (seeded by the capture
writer), line mode from a pipe, single keys from a pseudo-terminal, reconnects, and the errors."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import pathlib
import termios
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from _fake_kube import FakeKube

from mlops_operator import cli
from mlops_operator.cli import kube, review
from mlops_workloads import labels, storage
from mlops_workloads.review import backlog, demo, server


@contextlib.contextmanager
def review_server(uri: str) -> Iterator[str]:
    httpd = server.Server(
        ("127.0.0.1", 0),
        backlog=backlog.Backlog(storage.open_store(uri), refresh_seconds=0.0),
        deployment="iris",
        user_headers=(),
    )
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def waiting(uri: str, *, everything: bool = False) -> list[dict[str, Any]]:
    queue = backlog.Backlog(storage.open_store(uri), refresh_seconds=0.0)
    return queue.pending(limit=500, everything=everything).rows


def latest(uri: str) -> dict[tuple[str, int], dict[str, Any]]:
    table = labels.latest(labels.read(storage.open_store(uri)))
    return {(r["request_id"], r["row"]): r for r in table.to_pylist()}


def run(url: str, keys: str, *, everything: bool = False, reviewer: str = "tester") -> tuple[int, str]:
    out = io.StringIO()
    code = review.run(
        session=None,
        deployment="iris",
        url=url,
        reviewer=reviewer,
        everything=everything,
        inp=io.StringIO(keys),
        out=out,
    )
    return code, out.getvalue()


@pytest.fixture
def uri(tmp_path: pathlib.Path) -> str:
    root = f"file://{tmp_path}/root"
    demo.seed(root, requests=8)
    return root


def test_confirm_pick_and_skip_from_a_pipe(uri: str) -> None:
    rows = waiting(uri)
    with review_server(uri) as url:
        code, out = run(url, "y\n2\ns\nq\n")
    assert code == 0
    saved = latest(uri)
    first, second, third = (saved[(r["requestId"], r["row"])] for r in rows[:3])
    assert (first["action"], first["label"]) == ("confirmed", rows[0]["predictionLabel"])
    assert second["label"] == "versicolor"
    assert second["action"] == ("confirmed" if rows[1]["predictionLabel"] == "versicolor" else "corrected")
    assert (third["action"], third["label"]) == ("skipped", None)
    assert {r["reviewer"] for r in saved.values()} == {"tester"} and len(saved) == 3
    # The screen: inputs, the answer, a bar per class; the summary at the end.
    assert f"request {rows[0]['requestId']} · row {rows[0]['row']}" in out
    assert "sepal_length" in out and "model says: " in out and "█" in out
    assert f"saved skipped (request {rows[2]['requestId']} row {rows[2]['row']})" in out
    counts = {
        "confirmed": 1 + (second["action"] == "confirmed"),
        "corrected": int(second["action"] == "corrected"),
    }
    parts = ", ".join(f"{n} {a}" for a, n in sorted({**counts, "skipped": 1}.items()) if n)
    assert out.endswith(f"mlops review: labelled 3 rows as tester: {parts}; {len(rows) - 3} still waiting\n")


def test_moving_without_deciding_saves_nothing_and_a_decision_can_be_revisited(uri: str) -> None:
    rows = waiting(uri)
    with review_server(uri) as url:
        code, out = run(url, "j\nk\ny\nk\ns\nq\n")
    assert code == 0
    saved = latest(uri)
    assert list(saved) == [(rows[0]["requestId"], rows[0]["row"])]  # row 2 was passed, not labelled
    assert saved[(rows[0]["requestId"], rows[0]["row"])]["action"] == "skipped"  # the newest decision
    assert "already saved: confirmed" in out
    assert len(labels.files(storage.open_store(uri))) == 2  # both decisions on record


def test_wrong_keys_say_why_and_change_nothing(uri: str) -> None:
    rows = waiting(uri)
    with review_server(uri) as url:
        code, out = run(url, "daisy\n9\n?\nvirginica\nq\n")
    assert code == 0
    assert "'daisy' is not one of the classes: setosa, versicolor, virginica" in out
    assert "no class 9 here" in out
    assert review.HELP in out
    (only,) = latest(uri).values()
    assert (only["request_id"], only["row"], only["label"]) == (
        rows[0]["requestId"],
        rows[0]["row"],
        "virginica",
    )


def test_a_regressor_takes_a_typed_number(tmp_path: pathlib.Path) -> None:
    uri = f"file://{tmp_path}/root"
    demo.seed(uri, requests=3, task="regression")
    rows = waiting(uri, everything=True)
    with review_server(uri) as url:
        code, out = run(url, "", everything=False)
        assert code == 0
        assert "Nothing is waiting for review." in out and "6 other captured rows are (--all)" in out
        code, out = run(url, "\n4.25\nbad\nq\n", everything=True)
    assert code == 0
    assert "[number, Enter] the right value" in out
    assert "not saved: POST /api/labels: HTTP 400: item 1: label must be a finite number" in out
    saved = latest(uri)
    assert saved[(rows[0]["requestId"], rows[0]["row"])]["action"] == "confirmed"
    assert (
        saved[(rows[1]["requestId"], rows[1]["row"])]["action"],
        saved[(rows[1]["requestId"], rows[1]["row"])]["label"],
    ) == ("corrected", "4.25")
    assert len(saved) == 2


def test_the_end_of_the_rows_and_new_ones_arriving(uri: str) -> None:
    rows = waiting(uri, everything=True)
    with review_server(uri) as url:
        keys = "s\n" * len(rows) + "x\n"
        out_stream = io.StringIO()

        class Feed(io.StringIO):
            """Lines of keys; more rows are captured when the reviewer reaches the end."""

            def readline(self, *args: Any) -> str:
                line = super().readline(*args)
                if line == "x\n":
                    demo.seed(uri, requests=2, seed_value=5)
                return line

        code = review.run(
            session=None, deployment="iris", url=url, reviewer="t", everything=True,
            inp=Feed(keys + "s\nq\n"), out=out_stream,
        )  # fmt: skip
    out = out_stream.getvalue()
    assert code == 0
    assert "Nothing more is waiting for review." in out
    saved = latest(uri)
    assert any(rid.startswith("demo-5-") for rid, _ in saved)  # found after looking again


def test_single_keys_from_a_terminal() -> None:
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        out = io.StringIO()
        with review.KeyReader(slave, out) as keys:
            assert not termios.tcgetattr(slave)[3] & termios.ECHO  # cbreak: no echo
            os.write(master, b"\x1b[A\x1b[C\x1bOB\x1b[Dy3\rsjk?zq")
            got = [keys.read(regression=False) for _ in range(12)]
            os.write(master, b"4.5\x7f2x\r\r")
            value = keys.read(regression=True)
            confirm = keys.read(regression=True)
            os.write(master, b"\x1b7\r")  # a lone Escape, then a key: kept
            digit = keys.read(regression=True)
        assert [(c.kind, c.arg) for c in got] == [
            ("prev", None),
            ("next", None),
            ("next", None),
            ("prev", None),
            ("confirm", None),
            ("pick", 2),
            ("confirm", None),
            ("skip", None),
            ("next", None),
            ("prev", None),
            ("help", None),
            ("quit", None),
        ]  # 'z' is no key
        assert (value.kind, value.arg) == ("value", "4.2")
        assert confirm.kind == "confirm"
        assert "\r\x1b[Kvalue> 4.5\r\x1b[Kvalue> 4.\r\x1b[Kvalue> 4.2" in out.getvalue()  # backspace
        assert (digit.kind, digit.arg) == ("value", "7")  # a regressor's digit is no class
        assert termios.tcgetattr(slave) == before  # restored
        with review.KeyReader(slave, out) as keys:
            os.close(master)  # the terminal goes away: the end of input, and no error on exit
            master = -1
            assert keys.read(regression=False).kind == "quit"
    finally:
        if master >= 0:
            os.close(master)
        os.close(slave)


@pytest.mark.parametrize(
    ("line", "regression", "kind", "arg"),
    [
        ("\n", False, "confirm", None),
        ("Y\n", False, "confirm", None),
        ("3\n", False, "pick", 2),
        ("3\n", True, "value", "3"),
        ("12\n", False, "pick", 11),
        ("setosa\n", False, "value", "setosa"),
        ("s\n", False, "skip", None),
        ("j\n", True, "next", None),
        ("k\n", True, "prev", None),
        ("q\n", False, "quit", None),
    ],
)
def test_lines_as_commands(line: str, regression: bool, kind: str, arg: Any) -> None:
    command = review.command_of_line(line, regression=regression)
    assert (command.kind, command.arg) == (kind, arg)


def test_the_cli_wiring_and_its_errors(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with review_server(uri) as url:
        monkeypatch.setattr("sys.stdin", io.StringIO("y\nq\n"))
        out, err = io.StringIO(), io.StringIO()
        code = cli.main(["review", "iris", "--url", url, "--reviewer", "wired", "--all"], out=out, err=err)
        assert code == 0, err.getvalue()
        assert "labelled 1 row as wired: 1 confirmed" in out.getvalue()
    err = io.StringIO()
    assert cli.main(["review", "iris", "--url", "ftp://x"], out=io.StringIO(), err=err) == 1
    assert err.getvalue() == "mlops: --url must be http(s)://host[:port], not 'ftp://x'\n"
    err = io.StringIO()
    code = cli.main(
        ["review", "iris", "--url", "http://127.0.0.1:9", "--reviewer", "a"], out=io.StringIO(), err=err
    )
    assert code == 1 and err.getvalue().startswith("mlops: the review server did not answer GET /api/pending")
    monkeypatch.delenv("MLOPS_REVIEWER", raising=False)
    monkeypatch.setenv("MLOPS_REVIEWER", "from-env")
    assert review.default_reviewer() == "from-env"


def test_without_review_enabled_the_cli_says_how_to_enable_it() -> None:
    deployment = {
        "apiVersion": "mlops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {},
        "status": {"url": "http://iris.ml.svc.cluster.local/v2/models/iris"},
    }
    session = kube.Session(kube=FakeKube({"ModelDeployment": [deployment]}), namespace="ml")
    with pytest.raises(
        kube.CliError, match=r"ModelDeployment ml/iris has no review server: set spec\.logging"
    ):
        review.run(
            session=session,
            deployment="iris",
            url=None,
            reviewer="a",
            everything=False,
            inp=io.StringIO(),
            out=io.StringIO(),
        )
    deployment["status"]["review"] = {"url": "http://iris-review.ml.svc.cluster.local"}
    assert review.review_url(session, "iris") == "http://iris-review.ml.svc.cluster.local"
    with pytest.raises(kube.CliError, match="Service ml/iris-review not found"):
        connect, _ = review.forward_connect(session, "iris")
        connect()


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Drops the first connection without an answer, then answers once per connection."""

    protocol_version = "HTTP/1.0"  # the server closes after each response
    connections = 0

    def do_GET(self) -> None:
        type(self).connections += 1
        if type(self).connections == 1:
            self.close_connection = True
            self.connection.close()
            return
        body = json.dumps({"ok": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_dropped_or_closed_connection_is_opened_again_through_the_factory() -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    opened: list[int] = []
    try:
        plain, _ = review.url_connect(f"http://127.0.0.1:{httpd.server_address[1]}")

        def connect() -> Any:
            opened.append(1)
            return plain()

        api = review.Api(connect)
        assert api.request("GET", "/a") == {"ok": "/a"}  # the first connection was dropped: retried
        assert api.request("GET", "/b") == {"ok": "/b"}  # the server closed it: a new one, by the factory
        assert len(opened) == 3
        api.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
