"""The review page in a real browser: Debian's Chromium, headless, driven by selenium through
Debian's chromedriver, against ``python -m mlops_workloads.review`` (a subprocess) on a file://
store the model server's capture writer seeded.

A person types their name once, confirms a row with Enter, corrects one with a digit, skips one
with ``s``; the labels land beside the captured rows (``labels.read``/``latest``: reviewer,
action, label), the page's counts follow, and a reload remembers the name and does not show the
decided rows again. No Kubernetes cluster is involved, but every piece is a real process; a
missing browser or driver is a failure (``make test`` installs them: tests/install-deps.sh).
"""

from __future__ import annotations

import contextlib
import pathlib
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import browser
from mlops_workloads import labels, storage
from mlops_workloads.review import demo

ROOT = pathlib.Path(__file__).resolve().parents[2]
REVIEWER = "Ana Tester"


@contextlib.contextmanager
def review_server(uri: str, workdir: pathlib.Path) -> Iterator[str]:
    """``python -m mlops_workloads.review`` on ``uri``; its base URL once /healthz answers. It must
    stop cleanly (exit 0) on SIGTERM."""
    port_file = workdir / "review.port"
    log_path = workdir / "review.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "mlops_workloads.review", "--uri", uri, "--port", "0",
                "--port-file", str(port_file), "--deployment", "iris", "--namespace", "ml",
                "--refresh-seconds", "0.5", "--host", "127.0.0.1",
            ],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            url = None
            while time.monotonic() < deadline and proc.poll() is None:
                if port_file.is_file() and port_file.read_text().strip():
                    url = f"http://127.0.0.1:{port_file.read_text().strip()}"
                    try:
                        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                            if response.status == 200:
                                break
                    except OSError:
                        pass
                time.sleep(0.1)
            else:
                raise AssertionError(f"the review server did not start: {log_path.read_text()}")
            assert url is not None
            yield url
        finally:
            proc.terminate()
            try:
                code = proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError(f"the review server ignored SIGTERM: {log_path.read_text()}") from None
    assert code == 0, log_path.read_text()


def test_a_person_confirms_corrects_and_skips_rows_with_the_keyboard(tmp_path: pathlib.Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    uri = f"file://{tmp_path}/root"
    demo.seed(uri, requests=10)
    root = storage.open_store(uri)
    with review_server(uri, tmp_path) as url, browser.chromium(tmp_path) as driver:
        wait = WebDriverWait(driver, 20)

        def text(element_id: str) -> str:
            return str(driver.find_element(By.ID, element_id).text)

        def shown(element_id: str) -> bool:
            return bool(driver.find_element(By.ID, element_id).is_displayed())

        def press(*keys: str) -> None:
            ActionChains(driver).send_keys(*keys).perform()

        def current() -> tuple[str, int, str]:
            wait.until(lambda d: shown("card") and text("row-request-id"))
            return text("row-request-id"), int(text("row-index")), text("prediction")

        def wait_done(n: int) -> None:
            wait.until(lambda d: text("done-count") == str(n), message=f"done count {n}: {text('status')!r}")

        driver.get(url)
        # First visit: the page asks who is reviewing.
        wait.until(lambda d: shown("name-dialog"))
        assert text("deployment") == "iris"
        name = driver.find_element(By.ID, "reviewer-name")
        name.send_keys(REVIEWER, Keys.ENTER)
        wait.until(lambda d: not shown("name-dialog") and text("reviewer") == REVIEWER)
        wait.until(lambda d: text("waiting-count").isdigit())
        waiting = int(text("waiting-count"))
        assert waiting >= 4

        # Enter: the model's answer is right.
        first = current()
        labels_shown = driver.find_elements(By.CSS_SELECTOR, "#classes .class-option")
        assert [b.get_attribute("data-class") for b in labels_shown] == list(demo.CLASSES)
        assert (
            driver.find_element(By.CSS_SELECTOR, "#classes .class-option.predicted").get_attribute(
                "data-class"
            )
            == first[2]
        )
        inputs = {
            row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td").text
            for row in driver.find_elements(By.CSS_SELECTOR, "#inputs tbody tr")
        }
        assert list(inputs) == [n for n, _ in demo.FEATURES]
        press(Keys.ENTER)
        wait_done(1)

        # A digit: the right class is another one.
        second = current()
        assert second[:2] != first[:2]
        index = next(i for i, c in enumerate(demo.CLASSES) if c != second[2])
        press(str(index + 1))
        wait_done(2)

        # s: cannot tell.
        third = current()
        assert third[:2] not in {first[:2], second[:2]}
        press("s")
        wait_done(3)
        wait.until(lambda d: text("waiting-count") == str(waiting - 3))
        assert "skipped" in text("status")

        # k goes back and shows what was saved; ? opens the help, ? closes it.
        fourth = current()
        press("k")
        wait.until(lambda d: current()[:2] == third[:2])
        assert shown("row-decision") and f"skipped by {REVIEWER}" in text("row-decision")
        press("?")
        wait.until(lambda d: shown("help"))
        press("?")
        wait.until(lambda d: not shown("help"))
        press("j")
        wait.until(lambda d: current()[:2] == fourth[:2])

        # The labels, beside the captured rows.
        saved = {(r["request_id"], r["row"]): r for r in labels.latest(labels.read(root)).to_pylist()}
        assert set(saved) == {first[:2], second[:2], third[:2]}
        assert {r["reviewer"] for r in saved.values()} == {REVIEWER}
        assert (saved[first[:2]]["action"], saved[first[:2]]["label"]) == ("confirmed", first[2])
        assert (saved[second[:2]]["action"], saved[second[:2]]["label"]) == ("corrected", demo.CLASSES[index])
        assert saved[second[:2]]["prediction"] == second[2]
        assert (saved[third[:2]]["action"], saved[third[:2]]["label"]) == ("skipped", None)
        assert all(r["model_version"] == "3" for r in saved.values())
        assert len(labels.files(root)) == 3  # each decision saved as it was made

        # A reload: the name is remembered, the decided rows are not waiting any more.
        driver.refresh()
        wait.until(lambda d: text("reviewer") == REVIEWER)
        assert not shown("name-dialog")
        assert current()[:2] not in saved
        wait.until(lambda d: text("waiting-count") == str(waiting - 3))

        # "every captured row" lists the rows that were not low-confidence too.
        driver.find_element(By.ID, "show-all").click()
        wait.until(lambda d: text("waiting-count") == str(20 - 3))
        assert text("done-count") == "0"
        logs = driver.get_log("browser") if hasattr(driver, "get_log") else []
        assert not [entry for entry in logs if entry.get("level") == "SEVERE"], logs
