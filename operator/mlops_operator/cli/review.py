"""``mlops review DEPLOYMENT``: confirm or correct a ModelDeployment's captured rows in the terminal.

The same as the review page (``spec.logging.review``), one row at a time in plain text: the
inputs, the model's answer and a probability bar per class, then one key: ``Enter``/``y``
confirms the answer, ``1``..``9`` picks class n (a correction, or a confirmation when it is the
model's), a regressor takes a typed number and ``Enter``, ``s`` skips (cannot tell), ``j``/``k``
(or the arrows) move without saving, ``?`` shows the keys, ``q`` quits with a summary. Each
decision is saved at once (``POST /api/labels``), under ``--reviewer`` (default
``$MLOPS_REVIEWER``, else the login name).

On a terminal the keys are read one by one (termios cbreak mode, restored on exit); from a pipe
one command per line (``y``, ``2``, ``s``, ``3.5``, ``q``; a classifier's class name works too).

The review server is reached at ``--url``, at ``status.review.url`` when the CLI runs in the
cluster, or else through a port-forward to the review pod via the API server (as ``mlops
predict`` reaches serving pods); a dropped connection is opened again once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import getpass
import http.client
import json
import os
import select
import urllib.parse
from collections.abc import Callable
from typing import Any, TextIO

from mlops_operator.cli import kube, predict

PAGE = 50
BAR_WIDTH = 24
CLEAR = "\x1b[H\x1b[2J"
HELP = (
    "keys: Enter/y confirm the model's answer · 1-9 pick class n · a number then Enter (regressor) · "
    "s skip · j/k or arrows next/previous · ? help · q quit"
)


@dataclasses.dataclass(frozen=True)
class Command:
    """What the reviewer asked for: confirm, pick (class index), value (text), skip, next, prev,
    help, quit, or again (nothing, show the row again)."""

    kind: str
    arg: Any = None


# -- talking to the review server -------------------------------------------------------------


Connect = Callable[[], http.client.HTTPConnection]


class Api:
    """One keep-alive connection to the review server, opened again once when it was dropped."""

    def __init__(self, connect: Connect, *, prefix: str = "") -> None:
        self._connect = connect
        self._conn: http.client.HTTPConnection | None = None
        self.prefix = prefix.rstrip("/")

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._conn.request(method, self.prefix + path, body=data, headers=headers)
                response = self._conn.getresponse()
                raw = response.read()
                if response.will_close:  # reopened through the factory (a port-forward, not the URL)
                    self.close()
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 2:
                    raise kube.CliError(f"the review server did not answer {method} {path}: {exc}") from exc
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        if response.status >= 400:
            detail = payload.get("error") if isinstance(payload, dict) else payload
            raise kube.CliError(f"{method} {path}: HTTP {response.status}: {detail}")
        return payload

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def url_connect(url: str) -> tuple[Connect, str]:
    """A connection factory for ``--url`` (http or https) and the URL's path prefix."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in {"http", "https"} or not parsed.hostname:
        raise kube.CliError(f"--url must be http(s)://host[:port], not {url!r}")
    host, port = parsed.hostname, parsed.port
    if parsed.scheme == "https":
        return lambda: http.client.HTTPSConnection(host, port, timeout=60), parsed.path
    return lambda: http.client.HTTPConnection(host, port, timeout=60), parsed.path


def review_url(session: kube.Session, name: str) -> str:
    """The ModelDeployment's ``status.review.url``; a clear error when review is not enabled."""
    deployment = session.get("ModelDeployment", name)
    url = ((deployment.get("status") or {}).get("review") or {}).get("url")
    if not url:
        where = f"{kube.namespace_of(deployment)}/{name}"
        raise kube.CliError(
            f"ModelDeployment {where} has no review server: set spec.logging.review.enabled: true "
            "(and spec.logging), or give --url"
        )
    return str(url)


def forward_connect(session: kube.Session, name: str) -> tuple[Connect, Callable[[], None]]:
    """A connection factory to the review server of ModelDeployment ``name`` and a closer: the
    in-cluster URL inside a pod, else a port-forward to the ready review pod per connection."""
    url = review_url(session, name)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        direct, _ = url_connect(url)
        return direct, _nothing
    service, namespace, port, _ = predict.endpoint_from_status(url, name)
    namespace = namespace or session.namespace or "default"
    forwards: list[Any] = []

    def connect() -> http.client.HTTPConnection:
        pod, target = predict._ready_pod(session, service, namespace, port)
        from kubernetes import client as k8s_client
        from kubernetes import stream

        api = k8s_client.CoreV1Api(session.kube.api_client)
        try:
            forward = stream.portforward(
                api.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(target)
            )
        except Exception as exc:
            raise kube.CliError(f"port-forward to {namespace}/{pod}:{target} failed: {exc}") from exc
        forwards.append(forward)
        conn = http.client.HTTPConnection("127.0.0.1", target, timeout=60)
        conn.sock = forward.socket(target)
        return conn

    def close() -> None:
        for forward in forwards:
            forward.close()

    return connect, close


# -- the walk through the waiting rows --------------------------------------------------------


def key_of(row: dict[str, Any]) -> tuple[str, int]:
    return str(row["requestId"]), int(row["row"])


class Walk:
    """The rows this session shows, in order (newest first, as the server lists them), and what was
    decided; the page's logic, so both behave alike."""

    def __init__(self, api: Api, *, reviewer: str, everything: bool) -> None:
        self.api = api
        self.reviewer = reviewer
        self.everything = everything
        self.rows: list[dict[str, Any]] = []
        self.i = 0
        self.seen: set[tuple[str, int]] = set()
        self.decided: dict[tuple[str, int], dict[str, Any]] = {}
        self.waiting: int | None = None
        self.waiting_all: int | None = None
        self.last: str | None = None

    @property
    def current(self) -> dict[str, Any] | None:
        return self.rows[self.i] if self.i < len(self.rows) else None

    def _pending(self, offset: int) -> dict[str, Any]:
        query = f"limit={PAGE}&offset={offset}" + ("&all=1" if self.everything else "")
        page = self.api.request("GET", f"/api/pending?{query}")
        if not isinstance(page, dict):
            raise kube.CliError("the review server answered /api/pending with no rows")
        return page

    def refill(self) -> int:
        """Append waiting rows this session has not shown yet; how many."""
        undecided = sum(1 for r in self.rows if key_of(r) not in self.decided)
        added = 0
        for start in [undecided, 0] if undecided else [0]:
            offset = start
            while True:
                page = self._pending(offset)
                rows = page.get("rows") or []
                for row in rows:
                    if key_of(row) not in self.seen:
                        self.seen.add(key_of(row))
                        self.rows.append(row)
                        added += 1
                if added or len(rows) < int(page.get("limit") or PAGE):
                    break
                offset += len(rows)
            if added:
                break
        return added

    def stats(self) -> None:
        stats = self.api.request("GET", "/api/stats" + ("?all=1" if self.everything else ""))
        if isinstance(stats, dict):
            self.waiting = stats.get("waiting")
            self.waiting_all = stats.get("waitingAll")

    def advance(self) -> None:
        if self.i < len(self.rows):
            self.i += 1
        if self.i >= len(self.rows):
            self.refill()

    def back(self) -> None:
        self.i = max(0, self.i - 1)

    def decide(self, action: str, label: str | None) -> dict[str, Any]:
        row = self.current
        assert row is not None
        item = {"requestId": row["requestId"], "row": row["row"], "action": action, "label": label}
        answer = self.api.request("POST", "/api/labels", {"items": [item], "reviewer": self.reviewer})
        saved: dict[str, Any] = dict((answer or {}).get("saved", [{}])[0])
        saved["reviewer"] = (answer or {}).get("reviewer", self.reviewer)
        self.decided[key_of(row)] = saved
        what = saved.get("action", action)
        self.last = (
            f"saved {what}"
            + (f" → {saved['label']}" if saved.get("label") else "")
            + (f" (request {row['requestId']} row {row['row']})")
        )
        self.advance()
        self.stats()
        return saved

    def apply(self, command: Command) -> str | None:
        """Carry out one command; a message to show, or None."""
        row = self.current
        if command.kind == "next":
            self.advance()
        elif command.kind == "prev":
            self.back()
        elif command.kind == "again" and row is None:
            self.refill()
        elif row is None or command.kind in {"again", "help"}:
            return HELP if command.kind == "help" else None
        elif command.kind == "skip":
            self.decide("skipped", None)
        elif command.kind == "confirm":
            self.decide("confirmed", row.get("predictionLabel"))
        elif command.kind == "pick":
            classes = row.get("classes")
            if classes is None or not 0 <= command.arg < len(classes):
                return f"no class {command.arg + 1} here"
            name = classes[command.arg]
            self.decide("confirmed" if name == row.get("predictionLabel") else "corrected", name)
        elif command.kind == "value":
            if row.get("classes") is not None:
                names = list(row["classes"])
                if command.arg not in names:
                    return f"{command.arg!r} is not one of the classes: {', '.join(names)}"
                self.decide(
                    "confirmed" if command.arg == row.get("predictionLabel") else "corrected", command.arg
                )
            else:
                self.decide("corrected", command.arg)
        return None


# -- reading keys -----------------------------------------------------------------------------


def command_of_line(text: str, *, regression: bool) -> Command:
    """One typed line as a command (line mode)."""
    word = text.strip()
    lowered = word.lower()
    simple = {
        "": "confirm",
        "y": "confirm",
        "s": "skip",
        "j": "next",
        "n": "next",
        "k": "prev",
        "p": "prev",
        "?": "help",
        "h": "help",
        "q": "quit",
    }
    if lowered in simple:
        return Command(simple[lowered])
    if not regression and word.isdigit():
        return Command("pick", int(word) - 1)
    return Command("value", word)


class KeyReader:
    """Single keys from a terminal in cbreak mode (echo off, no line buffering, Ctrl-C still works)."""

    def __init__(self, fd: int, out: TextIO) -> None:
        self.fd = fd
        self.out = out
        self._saved: Any = None
        self._pushed = ""  # a key read while looking for an escape sequence, given back

    def __enter__(self) -> KeyReader:
        import termios
        import tty

        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        import termios

        if self._saved is not None:
            with contextlib.suppress(termios.error):  # the terminal went away (its window closed)
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def _byte(self, timeout: float | None = None) -> str:
        if self._pushed:
            key, self._pushed = self._pushed, ""
            return key
        if timeout is not None and not select.select([self.fd], [], [], timeout)[0]:
            return ""
        try:
            data = os.read(self.fd, 1)
        except OSError:  # the terminal went away: as the end of input
            data = b""
        return data.decode("latin-1") if data else "\x04"

    def read(self, *, regression: bool) -> Command:
        buffer = ""
        while True:
            key = self._byte()
            if key == "\x1b":  # an arrow (ESC [ A, or ESC O A in application mode), or Escape alone
                sequence = self._byte(0.05)
                if sequence in {"[", "O"}:
                    arrow = self._byte(0.05)
                    if arrow in {"A", "D"}:
                        return Command("prev")
                    if arrow in {"B", "C"}:
                        return Command("next")
                elif sequence:
                    self._pushed = sequence
                buffer = ""
                self._prompt(regression, buffer)
                continue
            if key == "\x04":  # end of input
                return Command("quit")
            if key in {"\r", "\n"}:
                return Command("value", buffer) if buffer else Command("confirm")
            if regression and (key.isdigit() or key in ".-+eE"):
                buffer += key
                self._prompt(regression, buffer)
                continue
            if regression and key in {"\x7f", "\b"}:
                buffer = buffer[:-1]
                self._prompt(regression, buffer)
                continue
            if buffer:
                continue  # letters while a number is typed: ignored
            if key == "y":
                return Command("confirm")
            if not regression and key in "123456789":
                return Command("pick", int(key) - 1)
            commands = {"s": "skip", "j": "next", "k": "prev", "?": "help", "q": "quit"}
            if key in commands:
                return Command(commands[key])

    def _prompt(self, regression: bool, buffer: str) -> None:
        if regression:
            self.out.write(f"\r\x1b[Kvalue> {buffer}")
            self.out.flush()


class LineReader:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def read(self, *, regression: bool) -> Command:
        line = self.stream.readline()
        if not line:
            return Command("quit")
        return command_of_line(line, regression=regression)


# -- showing a row ----------------------------------------------------------------------------


def _value(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _bar(p: float) -> str:
    cells = max(0.0, min(1.0, p)) * BAR_WIDTH
    full = int(cells)
    rest = "▏▎▍▌▋▊▉"[int((cells - full) * 7) - 1] if cells - full >= 1 / 7 else ""
    return "█" * full + rest


def _time(text: str) -> str:
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return str(text)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render(walk: Walk, *, title: str) -> str:
    """The screen for the walk's current row (or the end)."""
    lines: list[str] = []
    done = len(walk.decided)
    waiting = "?" if walk.waiting is None else str(walk.waiting)
    lines.append(f"── review {title} · done {done} · waiting {waiting} ──")
    if walk.last:
        lines.append(walk.last)
    row = walk.current
    if row is None:
        lines.append("")
        if walk.rows:
            lines.append(
                "Nothing more is waiting for review.  [k] previous  [q] quit  (any other key: look again)"
            )
        else:
            lines.append("Nothing is waiting for review.")
        if not walk.everything and walk.waiting == 0 and walk.waiting_all:
            lines.append(
                f"No low-confidence row is waiting; {walk.waiting_all} other captured rows are (--all)."
            )
        return "\n".join(lines) + "\n"
    reason = "low confidence" if row.get("lowConfidence") else str(row.get("reason") or "sample")
    lines.append(
        f"row {walk.i + 1} of {len(walk.rows)} loaded · request {row['requestId']} · row {row['row']} · "
        f"{_time(row.get('time', ''))} · model {row.get('modelName') or ''} "
        f"v{row.get('modelVersion') or '?'} · {reason}"
    )
    decision = walk.decided.get(key_of(row)) or row.get("decision")
    if decision:
        lines.append(
            f"already saved: {decision.get('action')}"
            + (f" → {decision['label']}" if decision.get("label") else "")
            + (f" by {decision['reviewer']}" if decision.get("reviewer") else "")
        )
    inputs = row.get("inputs") or {}
    width = max((len(name) for name in inputs), default=5)
    lines.append("")
    lines.append("inputs")
    for name, value in inputs.items():
        lines.append(f"  {name:<{width}}  {_value(value)}")
    lines.append("")
    confidence = row.get("confidence")
    sure = f" ({round(confidence * 100)}% sure)" if isinstance(confidence, (int, float)) else ""
    lines.append(f"model says: {row.get('predictionLabel')}{sure}")
    classes = row.get("classes")
    if classes is not None:
        probabilities = row.get("probabilities") or []
        name_width = max((len(c) for c in classes), default=5)
        for n, name in enumerate(classes):
            p = probabilities[n] if n < len(probabilities) else None
            key = str(n + 1) if n < 9 else " "
            mark = "←" if name == row.get("predictionLabel") else " "
            shown = f"{p:.2f}  {_bar(p)}" if isinstance(p, (int, float)) else ""
            lines.append(f"  {key}  {name:<{name_width}}  {shown} {mark}".rstrip())
        keys = f"[Enter/y] confirm  [1-{min(9, len(classes))}] pick class"
    else:
        keys = "[Enter/y] confirm  [number, Enter] the right value"
    lines.append("")
    lines.append(f"{keys}  [s] skip  [j/k] next/prev  [?] help  [q] quit")
    return "\n".join(lines) + "\n"


def summary(walk: Walk) -> str:
    counts: dict[str, int] = {}
    for saved in walk.decided.values():
        counts[str(saved.get("action"))] = counts.get(str(saved.get("action")), 0) + 1
    parts = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "nothing saved"
    waiting = "" if walk.waiting is None else f"; {walk.waiting} still waiting"
    rows = len(walk.decided)
    return (
        f"mlops review: labelled {rows} row{'s' if rows != 1 else ''} as {walk.reviewer}: {parts}{waiting}\n"
    )


# -- the command ------------------------------------------------------------------------------


def default_reviewer() -> str:
    name = os.environ.get("MLOPS_REVIEWER")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _nothing() -> None:
    return None


def run(
    *,
    session: kube.Session | None,
    deployment: str,
    url: str | None,
    reviewer: str | None,
    everything: bool,
    inp: TextIO,
    out: TextIO,
) -> int:
    name = (reviewer or default_reviewer()).strip()
    if not name:
        raise kube.CliError("give --reviewer NAME (who the labels are saved under)")
    if url:
        connect, prefix = url_connect(url)
        close = _nothing
    else:
        if session is None:
            raise kube.CliError("no cluster session (give --url)")
        connect, close = forward_connect(session, deployment)
        prefix = ""
    api = Api(connect, prefix=prefix)
    walk = Walk(api, reviewer=name, everything=everything)
    title = deployment if session is None or not session.namespace else f"{deployment} ({session.namespace})"
    tty = inp.isatty()
    try:
        walk.refill()
        walk.stats()
        if walk.current is None:
            out.write(render(walk, title=title))
            return 0
        if tty:
            with KeyReader(inp.fileno(), out) as keys:
                _loop(walk, keys.read, out, title=title, clear=True)
        else:
            _loop(walk, LineReader(inp).read, out, title=title, clear=False)
    except KeyboardInterrupt:
        out.write("\n")
    finally:
        api.close()
        close()
        out.write(summary(walk))
        out.flush()
    return 0


def _loop(walk: Walk, read: Callable[..., Command], out: TextIO, *, title: str, clear: bool) -> None:
    message: str | None = None
    while True:
        screen = render(walk, title=title)
        out.write((CLEAR if clear else "\n") + screen + (f"{message}\n" if message else ""))
        if walk.current is not None and walk.current.get("classes") is None:
            out.write("value> ")
        out.flush()
        row = walk.current
        command = read(regression=row is not None and row.get("classes") is None)
        if command.kind == "quit":
            return
        if row is None and command.kind not in {"prev", "next"}:
            command = Command("again")
        try:
            message = walk.apply(command)
        except kube.CliError as exc:  # a refused label: say why, keep going
            message = f"not saved: {exc}"
