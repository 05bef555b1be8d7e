"""``mlops review`` in a real terminal: tmux runs it against ``python -m mlops_workloads.review`` (a
subprocess, on a file:// store seeded by the capture writer), keys go in with ``tmux send-keys``,
the screen is read back with ``tmux capture-pane -p``.

One row confirmed with Enter, one corrected with a digit, one skipped with ``s``, an arrow back
and forth, then ``q``: the labels are on the store with the reviewer, the summary is on the
screen, and the terminal's modes are restored. No Kubernetes cluster; a missing tmux is a
failure (``make test`` installs it).
"""

from __future__ import annotations

import contextlib
import pathlib
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator

from test_review_page import ROOT, review_server

import browser
from mlops_workloads import labels, storage
from mlops_workloads.review import demo

ROW = re.compile(r"request (\S+) · row (\d+) ·")
ANSWER = re.compile(r"model says: (\S+)")


@contextlib.contextmanager
def tmux_session(command: str, workdir: pathlib.Path) -> Iterator[Callable[..., str]]:
    """A detached tmux session (its own server socket) running ``command``; yields ``tmux(*args)``."""
    binary = browser.binary("tmux")
    socket = f"mlops-review-{uuid.uuid4().hex[:8]}"

    def tmux(*args: str) -> str:
        proc = subprocess.run(
            [binary, "-L", socket, *args], capture_output=True, text=True, timeout=30, check=False
        )
        if proc.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    tmux("-f", "/dev/null", "new-session", "-d", "-s", "review", "-x", "160", "-y", "60", command)
    try:
        yield tmux
    finally:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            tmux("kill-server")


def test_a_person_labels_rows_key_by_key_in_tmux(tmp_path: pathlib.Path) -> None:
    uri = f"file://{tmp_path}/root"
    demo.seed(uri, requests=10)
    root = storage.open_store(uri)
    with review_server(uri, tmp_path) as url:
        done = tmp_path / "exit-code"
        cli = [sys.executable, "-c", "import sys; from mlops_operator import cli; sys.exit(cli.main())"]
        command = (
            f"cd {shlex.quote(str(ROOT))} && stty -g > {shlex.quote(str(tmp_path / 'stty-before'))}; "
            f"{shlex.join([*cli, 'review', 'iris', '--url', url, '--reviewer', 'tty-tester'])}; "
            f"echo $? > {shlex.quote(str(done))}; stty -g > {shlex.quote(str(tmp_path / 'stty-after'))}; "
            "echo REVIEW-ENDED; sleep 60"
        )
        with tmux_session(command, tmp_path) as tmux:

            def screen() -> str:
                return tmux("capture-pane", "-p", "-t", "review")

            def wait_for(predicate: Callable[[str], object], what: str, timeout: float = 30) -> str:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    text = screen()
                    if predicate(text):
                        return text
                    time.sleep(0.1)
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen()}")

            def row_on(text: str) -> tuple[str, int, str] | None:
                row, answer = ROW.search(text), ANSWER.search(text)
                if not row or not answer:
                    return None
                return row.group(1), int(row.group(2)), answer.group(1)

            def next_row(after: set[tuple[str, int]], done_count: int) -> tuple[str, int, str]:
                text = wait_for(
                    lambda t: (
                        f"done {done_count} ·" in t and (r := row_on(t)) is not None and r[:2] not in after
                    ),
                    f"a new row after {done_count} decisions",
                )
                found = row_on(text)
                assert found is not None
                return found

            def send(*keys: str) -> None:
                tmux("send-keys", "-t", "review", *keys)

            first = next_row(set(), 0)
            text = screen()
            assert "inputs" in text and "sepal_length" in text and "█" in text
            assert "[Enter/y] confirm  [1-3] pick class  [s] skip" in text
            send("Enter")
            second = next_row({first[:2]}, 1)
            index = next(i for i, c in enumerate(demo.CLASSES) if c != second[2])
            send(str(index + 1))
            third = next_row({first[:2], second[:2]}, 2)
            send("s")
            fourth = next_row({first[:2], second[:2], third[:2]}, 3)
            assert "saved skipped" in screen()
            send("Left")  # back to the skipped row, which shows its decision
            wait_for(lambda t: (r := row_on(t)) is not None and r[:2] == third[:2], "the previous row")
            assert "already saved: skipped by tty-tester" in screen()
            send("Right")
            wait_for(lambda t: (r := row_on(t)) is not None and r[:2] == fourth[:2], "the next row again")
            send("q")
            text = wait_for(lambda t: "REVIEW-ENDED" in t, "the command to end")
            assert "mlops review: labelled 3 rows as tty-tester: " in text
            assert done.read_text().strip() == "0"
            # The terminal is left as it was found (echo and line editing back on).
            assert (tmp_path / "stty-before").read_text() == (tmp_path / "stty-after").read_text()

    saved = {(r["request_id"], r["row"]): r for r in labels.latest(labels.read(root)).to_pylist()}
    assert set(saved) == {first[:2], second[:2], third[:2]}
    assert {r["reviewer"] for r in saved.values()} == {"tty-tester"}
    assert (saved[first[:2]]["action"], saved[first[:2]]["label"]) == ("confirmed", first[2])
    assert (saved[second[:2]]["action"], saved[second[:2]]["label"]) == ("corrected", demo.CLASSES[index])
    assert (saved[third[:2]]["action"], saved[third[:2]]["label"]) == ("skipped", None)


def test_ctrl_c_ends_the_review_with_a_summary(tmp_path: pathlib.Path) -> None:
    uri = f"file://{tmp_path}/root"
    demo.seed(uri, requests=3)
    with review_server(uri, tmp_path) as url:
        cli = [sys.executable, "-c", "import sys; from mlops_operator import cli; sys.exit(cli.main())"]
        command = (
            f"cd {shlex.quote(str(ROOT))} && "
            f"{shlex.join([*cli, 'review', 'iris', '--url', url, '--reviewer', 'quitter'])}; "
            "echo REVIEW-ENDED $?; sleep 60"
        )
        with tmux_session(command, tmp_path) as tmux:
            deadline = time.monotonic() + 30
            while "model says:" not in tmux("capture-pane", "-p", "-t", "review"):
                assert time.monotonic() < deadline, tmux("capture-pane", "-p", "-t", "review")
                time.sleep(0.1)
            tmux("send-keys", "-t", "review", "C-c")
            while "REVIEW-ENDED" not in (text := tmux("capture-pane", "-p", "-t", "review")):
                assert time.monotonic() < deadline, text
                time.sleep(0.1)
    assert "mlops review: labelled 0 rows as quitter: nothing saved" in text
    assert "REVIEW-ENDED 0" in text
