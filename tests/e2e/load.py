"""An open-loop HTTP load generator for the real-node tier: ``workers`` threads, each with its
own keep-alive connection (as a production client keeps one), together sending ``rate``
requests per second; every answer that is not a 200, and every connection error, is kept as
a failure with its time and cause.

Keep-alive matters: a server that closes a kept-alive connection while a client writes to it
fails that request even when no pod is unready, which a connection-per-request generator
would never see. ``Connection: close`` from the server (sent while it drains) is honoured:
the next request opens a new connection, through the Service, to a pod that stays.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import threading
import time
from typing import Any


@dataclasses.dataclass(frozen=True)
class Answer:
    at: float  # time.monotonic() when the answer arrived
    ok: bool
    detail: str  # the model version for a 200, else the status or the error


class LoadGenerator:
    def __init__(self, host: str, port: int, path: str, body: dict[str, Any], *, workers: int = 4) -> None:
        self.host, self.port, self.path = host, port, path
        self.body = json.dumps(body).encode()
        self.workers = workers
        self.rate = 0.0
        self.answers: list[Answer] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> LoadGenerator:
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, args=(i,), name=f"load-{i}", daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def set_rate(self, rate: float) -> None:
        """Total requests per second across the workers (0 pauses them)."""
        self.rate = rate

    def _work(self, index: int) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        next_at = time.monotonic() + index * 0.01
        try:
            while not self.stopping.is_set():
                rate = self.rate
                if rate <= 0:
                    time.sleep(0.05)
                    next_at = time.monotonic()
                    continue
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at = max(next_at + self.workers / rate, time.monotonic() - 1.0)
                self._record(self._one(conn))
        finally:
            conn.close()

    def _one(self, conn: http.client.HTTPConnection) -> Answer:
        try:
            conn.request("POST", self.path, body=self.body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            if response.will_close:
                conn.close()  # the server said Connection: close; the next request reconnects
            if response.status != 200:
                return Answer(time.monotonic(), False, f"HTTP {response.status}: {data[:200]!r}")
            version = str(json.loads(data).get("model_version", ""))
            return Answer(time.monotonic(), True, version)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            conn.close()
            return Answer(time.monotonic(), False, f"{type(exc).__name__}: {exc}")

    def _record(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)

    def snapshot(self) -> list[Answer]:
        with self.lock:
            return list(self.answers)
