"""Debian's Chromium, headless, driven by selenium through Debian's chromedriver: the browser every
web-page test uses (the review page). A missing browser or driver is a failure, never a skip
(``make test`` installs them: tests/install-deps.sh)."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
from collections.abc import Iterator
from typing import Any

import pytest


def binary(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.fail(
            f"{name} is not installed: apt-get install -y chromium chromium-driver tmux "
            "(tests/install-deps.sh does it)",
            pytrace=False,
        )
    return found


@contextlib.contextmanager
def chromium(workdir: pathlib.Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = binary("chromium")
    driver_path = binary("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--window-size=1280,1000",
        f"--user-data-dir={workdir / 'profile'}",
    ):
        options.add_argument(argument)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    service = Service(executable_path=driver_path, log_output=str(workdir / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()
