"""A real PostgreSQL beside the control plane, for SQL Dataset sources (Debian's ``postgresql``).

    python tests/cluster/postgres.py up|down|status|info|wipe   # localcluster.py up/down call it

The SQL examples and tests read from a real server, never a mock: a wrong password, a missing
table or a timeout must come back with PostgreSQL's own message. ``up()`` is idempotent:

- the server binaries come from Debian's package (``/usr/lib/postgresql/<version>/bin``, not on
  PATH); ``tests/install-deps.sh`` installs it when they are missing;
- one cluster, initdb'ed once, listening on 0.0.0.0 port ``PORT_BASE + 432``; TCP logins need a
  SCRAM password, from loopback (the host, the kwok tier's in-process workloads) and from the
  pod network 10.244.0.0/16 (pods on the real node reach the host at 10.244.1.1);
- a database ``mlops`` owned by the login role ``mlops``, whose generated password is kept in
  ``<state>/password`` (mode 0600) and handed to PostgreSQL as a SCRAM verifier only;
- the table ``examples.breast_cancer``: scikit-learn's breast cancer data (569 rows, 30 float
  columns in snake_case, integer ``target``), loaded from the CSV scikit-learn ships;
- the Secret ``default/mlops-postgres`` (key ``url``: the pods' SQLAlchemy URL), applied
  server-side so no last-applied annotation copies the password.

PostgreSQL refuses to run as root, so as root the server runs as Debian's ``postgres`` user,
and its data directory lives under that user's home (``/var/lib/postgresql/mlops-operator/``):
root's own home (where the cluster state is) is closed to other users. Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import glob
import hashlib
import hmac
import importlib.util
import json
import os
import pathlib
import pwd
import secrets
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import localcluster  # noqa: E402
import realnode_config  # noqa: E402

PORT = localcluster.PORT_BASE + 432
STATE = localcluster.STATE / "postgres"
PASSWORD_FILE = STATE / "password"
LOG_FILE = STATE / "postgres.log"
DATABASE = "mlops"
USER = "mlops"
SERVER_USER = "postgres"  # Debian's package creates it; the server's OS user when we are root
SECRET_NAME = "mlops-postgres"
SECRET_NAMESPACE = "default"
SECRET_KEY = "url"
POD_HOST = realnode_config.NODE_IP
TABLE = "examples.breast_cancer"
SCRAM_ITERATIONS = 4096

_MEASURES = (
    "radius",
    "texture",
    "perimeter",
    "area",
    "smoothness",
    "compactness",
    "concavity",
    "concave_points",
    "symmetry",
    "fractal_dimension",
)
# scikit-learn's feature order ("mean radius" ... "radius error" ... "worst radius" ...), snake_case.
BREAST_CANCER_COLUMNS = (
    *(f"mean_{m}" for m in _MEASURES),
    *(f"{m}_error" for m in _MEASURES),
    *(f"worst_{m}" for m in _MEASURES),
)
BREAST_CANCER_ROWS = 569


def log(msg: str) -> None:
    print(f"postgres: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Where things are
# --------------------------------------------------------------------------------------------


def _as_root() -> bool:
    return os.geteuid() == 0


def server_root() -> pathlib.Path:
    """The directory the server's OS user owns: data, socket (see the module docstring)."""
    if _as_root():
        return pathlib.Path(pwd.getpwnam(SERVER_USER).pw_dir) / "mlops-operator" / str(PORT)
    return STATE


def data_dir() -> pathlib.Path:
    return server_root() / "data"


def socket_dir() -> pathlib.Path:
    return server_root() / "run"


def _bin_dirs() -> list[pathlib.Path]:
    """Debian's versioned server directories, newest first."""
    found = [pathlib.Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    return sorted(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)


def pg_tool(name: str, *, install: bool = True) -> str:
    """A PostgreSQL program; installs Debian's package first when it is missing (idempotent)."""
    dirs = _bin_dirs()
    if install and (not dirs or not (dirs[0] / name).exists()):
        log("PostgreSQL's server binaries are missing: running tests/install-deps.sh")
        subprocess.run(["bash", str(ROOT / "tests" / "install-deps.sh")], check=True)
        dirs = _bin_dirs()
    if not dirs or not (dirs[0] / name).exists():
        raise RuntimeError(
            f"no {name} under /usr/lib/postgresql/<version>/bin; install Debian's postgresql package "
            "(bash tests/install-deps.sh)"
        )
    return str(dirs[0] / name)


# --------------------------------------------------------------------------------------------
# Running the server's programs as its OS user
# --------------------------------------------------------------------------------------------


def _run(
    argv: list[str], *, input_: str | None = None, check: bool = True, stdout: int | None = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as the server's OS user (``postgres`` when we are root, else ourselves)."""
    env = {**os.environ, "LC_ALL": "C.UTF-8", "PGPORT": str(PORT)}
    uid = gid = groups = None
    if _as_root():
        account = pwd.getpwnam(SERVER_USER)
        uid, gid, groups = account.pw_uid, account.pw_gid, []
        env["HOME"] = account.pw_dir
    proc = subprocess.run(
        argv,
        input=input_,
        text=True,
        stdout=stdout,
        stderr=subprocess.PIPE if stdout == subprocess.PIPE else subprocess.STDOUT,
        env=env,
        cwd=str(server_root()),
        check=False,
        user=uid,
        group=gid,
        extra_groups=groups,
    )
    if check and proc.returncode != 0:
        detail = (proc.stderr or "").strip() or f"see {LOG_FILE}"
        raise RuntimeError(f"{pathlib.Path(argv[0]).name} failed ({proc.returncode}): {detail}")
    return proc


def superuser() -> str:
    """The cluster's superuser: the server's OS user (peer authentication on the socket)."""
    return SERVER_USER if _as_root() else pwd.getpwuid(os.geteuid()).pw_name


def _psql(sql: str, *, database: str = "postgres", input_: str | None = None) -> str:
    """Run SQL as the superuser over the Unix socket (peer authentication)."""
    argv = [pg_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA"]
    argv += ["-h", str(socket_dir()), "-p", str(PORT), "-U", superuser(), "-d", database, "-c", sql]
    return _run(argv, input_=input_).stdout.strip()


def _prepare_dirs() -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    root = server_root()
    root.mkdir(parents=True, exist_ok=True)
    socket_dir().mkdir(exist_ok=True)
    if _as_root():
        account = pwd.getpwnam(SERVER_USER)
        for path in (root, socket_dir()):
            os.chown(path, account.pw_uid, account.pw_gid)
    for path in (root, socket_dir()):
        path.chmod(0o700)


# --------------------------------------------------------------------------------------------
# The password (a SCRAM verifier is all PostgreSQL ever sees)
# --------------------------------------------------------------------------------------------


def password() -> str:
    """The ``mlops`` role's password, generated once (URL-safe characters only)."""
    if not PASSWORD_FILE.exists():
        STATE.mkdir(parents=True, exist_ok=True)
        fd = os.open(PASSWORD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24))
    PASSWORD_FILE.chmod(0o600)
    return PASSWORD_FILE.read_text().strip()


def scram_verifier(secret: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802, as ``pg_authid`` keeps it),
    so the plain password never reaches the server (nor its log, if a statement failed)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def url(host: str = "127.0.0.1", *, secret: str | None = None) -> str:
    """The SQLAlchemy URL of the ``mlops`` database as seen from ``host``."""
    quoted = urllib.parse.quote(password() if secret is None else secret, safe="")
    return f"postgresql+psycopg://{USER}:{quoted}@{host}:{PORT}/{DATABASE}"


# --------------------------------------------------------------------------------------------
# Lifecycle
# --------------------------------------------------------------------------------------------

PG_HBA = f"""# Written by tests/cluster/postgres.py.
local   all   all                    peer
host    all   all   127.0.0.1/32     scram-sha-256
host    all   all   ::1/128          scram-sha-256
host    all   all   {localcluster.POD_CIDR}    scram-sha-256
"""


def _initdb() -> None:
    if (data_dir() / "PG_VERSION").exists():
        return
    log(f"initdb {data_dir()}")
    _run([pg_tool("initdb"), "-D", str(data_dir()), "-U", superuser(), "-E", "UTF8", "--no-locale"])


def _write_config() -> None:
    hba = data_dir() / "pg_hba.conf"
    if hba.read_text() != PG_HBA:
        hba.write_text(PG_HBA)  # as root the file stays the server user's (written in place)


def running() -> bool:
    if not (data_dir() / "PG_VERSION").exists() or not _bin_dirs():
        return False
    return (
        _run([pg_tool("pg_ctl", install=False), "status", "-D", str(data_dir())], check=False).returncode == 0
    )


def _start() -> None:
    if running():
        _run([pg_tool("pg_ctl"), "reload", "-D", str(data_dir())])  # picks up pg_hba.conf
        return
    options = " ".join(
        [
            "-c listen_addresses='0.0.0.0'",
            f"-p {PORT}",
            f"-c unix_socket_directories='{socket_dir()}'",
            "-c password_encryption=scram-sha-256",
            "-c max_connections=50",
        ]
    )
    with LOG_FILE.open("ab") as out:  # opened by us: the server's user need not reach STATE
        _run(
            [pg_tool("pg_ctl"), "start", "-w", "-t", "60", "-D", str(data_dir()), "-o", options],
            stdout=out.fileno(),
        )
    log(f"started PostgreSQL on 0.0.0.0:{PORT} (log {LOG_FILE})")


def _csv_rows() -> Iterator[str]:
    """scikit-learn's breast_cancer.csv rows (its first line is a count header, not names)."""
    path = _breast_cancer_csv()
    with path.open(encoding="utf-8") as src:
        next(src)
        for line in src:
            if line.strip():
                yield line.strip()


def _breast_cancer_csv() -> pathlib.Path:
    """The CSV scikit-learn ships, from this interpreter's sklearn or the repository's .venv."""
    spec = importlib.util.find_spec("sklearn")
    packages = [pathlib.Path(spec.origin).parent] if spec is not None and spec.origin else []
    packages += [pathlib.Path(p) for p in glob.glob(str(ROOT / ".venv/lib/python3*/site-packages/sklearn"))]
    for package in packages:
        candidate = package / "datasets" / "data" / "breast_cancer.csv"
        if candidate.is_file():
            return candidate
    raise RuntimeError(
        f"cannot seed {TABLE}: scikit-learn's breast_cancer.csv is in neither this Python nor .venv; "
        "run `make venv` first"
    )


def _seed() -> None:
    verifier = scram_verifier(password())
    exists = _psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{USER}'")
    if not exists:
        _psql(f"CREATE ROLE {USER} LOGIN")
    _psql(f"ALTER ROLE {USER} LOGIN PASSWORD '{verifier}'")
    if not _psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"):
        _psql(f"CREATE DATABASE {DATABASE} OWNER {USER}")
    columns = ", ".join(
        [*(f"{c} double precision NOT NULL" for c in BREAST_CANCER_COLUMNS), "target integer"]
    )
    _psql(
        f"CREATE SCHEMA IF NOT EXISTS examples AUTHORIZATION {USER}; "
        f"CREATE TABLE IF NOT EXISTS {TABLE} ({columns}); ALTER TABLE {TABLE} OWNER TO {USER}",
        database=DATABASE,
    )
    if _psql(f"SELECT count(*) FROM {TABLE}", database=DATABASE) == str(BREAST_CANCER_ROWS):
        return
    rows = "\n".join(_csv_rows()) + "\n"
    # psql -c runs COPY ... FROM STDIN with the rows on psql's own standard input.
    argv = [pg_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-h", str(socket_dir())]
    argv += ["-p", str(PORT), "-U", superuser(), "-d", DATABASE]
    argv += ["-c", f"TRUNCATE {TABLE}", "-c", f"COPY {TABLE} FROM STDIN WITH (FORMAT csv)"]
    _run(argv, input_=rows)
    log(f"seeded {TABLE} ({BREAST_CANCER_ROWS} rows)")


def secret_manifest(host: str = POD_HOST) -> dict[str, object]:
    """The Secret the SQL examples name: key ``url``, the database as pods reach it."""
    value = base64.b64encode(url(host).encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET_NAME, "namespace": SECRET_NAMESPACE},
        "type": "Opaque",
        "data": {SECRET_KEY: value},
    }


def up(bins: pathlib.Path | None = None) -> dict[str, str]:
    """Start (initdb, seed) whatever is not there; apply the Secret when ``bins`` (kubectl) is given."""
    pg_tool("postgres")  # install first: the postgres OS user comes with the package
    _prepare_dirs()
    _initdb()
    _write_config()
    _start()
    _seed()
    if bins is not None:
        localcluster._kubectl(
            bins,
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=localcluster",
            "-f",
            "-",
            input_=json.dumps(secret_manifest()),
        )
    return info()


def ensure(bins: pathlib.Path) -> None:
    """``up(bins)`` for ``localcluster.py up``: a database that cannot start is reported, and the
    control plane (which most tests need, and none of them needs this) stays up."""
    try:
        up(bins)
    except (OSError, RuntimeError, subprocess.SubprocessError, KeyError) as exc:
        log(f"PostgreSQL for the SQL examples is not available: {exc}")


def down(wipe: bool = False) -> None:
    """Stop the server (``wipe``: and drop its data and password); never installs anything."""
    try:
        if running():
            _run([pg_tool("pg_ctl", install=False), "stop", "-D", str(data_dir()), "-m", "fast", "-w"])
            log("stopped PostgreSQL")
    except (OSError, RuntimeError, KeyError) as exc:
        log(f"could not stop PostgreSQL: {exc}")
    if wipe:
        shutil.rmtree(server_root() / "data", ignore_errors=True)
        PASSWORD_FILE.unlink(missing_ok=True)
        log("wiped PostgreSQL's data")


def info() -> dict[str, str]:
    """How to reach the database: URLs (with the password) for the host and for pods."""
    return {
        "port": str(PORT),
        "database": DATABASE,
        "user": USER,
        "table": TABLE,
        "hostUrl": url("127.0.0.1"),
        "podUrl": url(POD_HOST),
        "secret": f"{SECRET_NAMESPACE}/{SECRET_NAME}",
        "dataDir": str(data_dir()),
        "log": str(LOG_FILE),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "info", "wipe"])
    args = parser.parse_args(argv)
    if args.command == "up":
        up(localcluster.bin_dir() if localcluster.running() else None)
    elif args.command == "down":
        down()
    elif args.command == "wipe":
        down(wipe=True)
    elif args.command == "status":
        print(f"postgres: {'running' if running() else 'stopped'}")
    else:
        shown = {k: v for k, v in info().items() if not k.endswith("Url")}  # URLs hold the password
        print(json.dumps({**shown, "passwordFile": str(PASSWORD_FILE)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
