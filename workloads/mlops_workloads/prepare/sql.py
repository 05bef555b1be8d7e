"""The ``sql`` source: the rows one query returns, read with SQLAlchemy (PostgreSQL, SQLite).

The connection URL comes from a Secret that the kubelet mounts at
``<secrets_root>/sources/<index>/<key>``: the operator never reads it, and neither the URL's
password nor the URL itself ever reaches a message, a log line or the Dataset's status (a
target is named by ``render_as_string(hide_password=True)``, and the driver's own message is
scrubbed of the password in case it ever quotes it). Failures keep the database's own words:
``ConnectionFailed`` (a wrong password, an unreachable host), ``QueryFailed`` (a missing
table, a syntax error), ``QueryTimeout``.

Rows are streamed (a server-side cursor on PostgreSQL) in chunks of ``CHUNK_ROWS``, each turned
into typed pandas columns at once, so no more than a chunk of Python objects lives at a time.
Column types come from the database where the driver says (PostgreSQL's type OIDs), otherwise
from the values (SQLite is dynamically typed): integers → ``Int64``, floating point and
numeric/decimal → ``float64``, boolean → ``boolean``, dates and timestamps → ``datetime64``,
everything else → text, which the validation step types like CSV text.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import json
import logging
import pathlib
import re
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import sqlalchemy
from sqlalchemy import exc as sa_exc
from sqlalchemy import pool as sa_pool

from mlops_operator.api import dataset as api
from mlops_operator.api import dataset_sources as api_sources
from mlops_workloads import runtime

LOG = logging.getLogger("mlops_workloads.prepare.sql")
CHUNK_ROWS = 10_000
DRIVERS = ("postgresql+psycopg", "sqlite")
DB_MESSAGE_MAX = 700
SQLITE_PROGRESS_STEPS = 10_000
HIDDEN = "***"

Kind = Literal["null", "bool", "int", "float", "datetime", "text", "binary"]

# PostgreSQL's built-in type OIDs (fixed in pg_type.dat) and the column kind each becomes.
PG_KINDS: dict[int, Kind] = {
    16: "bool",
    17: "binary",  # bytea
    20: "int",  # int8
    21: "int",  # int2
    23: "int",  # int4
    26: "int",  # oid
    700: "float",  # float4
    701: "float",  # float8
    1700: "float",  # numeric: Decimal values, turned into floats
    1082: "datetime",  # date
    1114: "datetime",  # timestamp
    1184: "datetime",  # timestamptz
    18: "text",
    19: "text",
    25: "text",
    1042: "text",
    1043: "text",
}
PG_QUERY_CANCELED = "57014"


@dataclasses.dataclass(frozen=True)
class Target:
    """The parsed connection URL; ``secrets`` are the strings no message may contain."""

    url: sqlalchemy.engine.URL
    secrets: tuple[str, ...]

    @property
    def shown(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, HIDDEN)
        return text


def read(source: api_sources.SqlSource, *, index: int, where: str, config: api.PrepareConfig) -> pd.DataFrame:
    """Run the source's query and return its rows as typed columns."""
    ref = source.connection_secret_ref
    path = pathlib.Path(config.secrets_root) / "sources" / str(index) / ref.key
    target = parse_url(_read_secret(path, ref=ref, namespace=config.namespace, where=where), where=where)
    _check_sqlite_file(target, where=where)
    engine = _engine(target, timeout=source.timeout_seconds, where=where)
    try:
        return _run_query(engine, target, source=source, index=index, where=where)
    except (runtime.WorkloadError, MemoryError):
        raise
    except Exception as exc:  # a driver's unexpected error: reported, but scrubbed like the others
        raise runtime.WorkloadError(
            "SourceUnreadable",
            f"{where}: reading from {target.shown} failed: {type(exc).__name__}: {db_message(exc, target)}",
        ) from None
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------
# The connection
# ---------------------------------------------------------------------------------------------


def _read_secret(
    path: pathlib.Path, *, ref: api_sources.SecretKeySelector, namespace: str, where: str
) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        text = None
    except (OSError, UnicodeDecodeError) as exc:
        raise runtime.WorkloadError(
            "SourceUnreadable",
            f"{where}: cannot read key {ref.key!r} of Secret {ref.name!r}: {type(exc).__name__}",
        ) from None
    if text is None:
        raise runtime.WorkloadError(
            "SourceUnreadable",
            f"{where}: Secret {ref.name!r} in namespace {namespace!r} does not exist or has no key "
            f"{ref.key!r}; create it with the database's SQLAlchemy URL in that key "
            f"(kubectl create secret generic {ref.name} -n {namespace} --from-literal={ref.key}="
            "postgresql+psycopg://user:password@host:5432/database)",
        )
    if not text:
        raise runtime.WorkloadError(
            "SourceUnreadable",
            f"{where}: key {ref.key!r} of Secret {ref.name!r} is empty; it must hold a URL",
        )
    return text


def parse_url(raw: str, *, where: str) -> Target:
    """The SQLAlchemy URL in ``raw``; plain ``postgresql://`` and ``postgres://`` use psycopg 3."""
    try:
        url = sqlalchemy.engine.make_url(raw)
    except (sa_exc.ArgumentError, ValueError):
        # Never quote ``raw``: it holds the password.
        raise runtime.WorkloadError(
            "InvalidConfig",
            f"{where}: the Secret's value is not an SQLAlchemy URL (dialect+driver://user:password@host:"
            "port/database, e.g. postgresql+psycopg://... or sqlite:////path/to/file.db)",
        ) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    password = url.password if isinstance(url.password, str) else None
    secrets = [raw]
    if password:
        secrets += [password, urllib.parse.quote(password, safe=""), urllib.parse.quote_plus(password)]
    # Longest first, so that a password inside the raw URL is not half-replaced.
    return Target(url=url, secrets=tuple(sorted(set(secrets), key=len, reverse=True)))


def _check_sqlite_file(target: Target, *, where: str) -> None:
    """A missing SQLite file would be created empty, and its query would fail for the wrong reason."""
    database = target.url.database or ""
    if target.url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return
    if database.startswith("file:"):
        return  # an SQLite URI filename (?uri=true): SQLite resolves it
    if not pathlib.Path(database).is_file():
        raise runtime.WorkloadError(
            "SourceUnreadable",
            f"{where}: no SQLite database file at {database}; check the URL and that the pod mounts it",
        )


def _engine(target: Target, *, timeout: int, where: str) -> sqlalchemy.engine.Engine:
    backend = target.url.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        connect_args = {"connect_timeout": max(2, timeout), "application_name": "mlops-prepare"}
    elif backend == "sqlite":
        connect_args = {"timeout": float(timeout)}  # waiting for another writer's lock
    try:
        return sqlalchemy.create_engine(target.url, poolclass=sa_pool.NullPool, connect_args=connect_args)
    except (sa_exc.NoSuchModuleError, sa_exc.ArgumentError, ImportError) as exc:
        raise runtime.WorkloadError(
            "InvalidConfig",
            f"{where}: the prepare image has no SQLAlchemy driver for {target.url.drivername!r} "
            f"({target.scrub(type(exc).__name__ + ': ' + str(exc))[:300]}); it has {', '.join(DRIVERS)}",
        ) from None


def db_message(exc: BaseException, target: Target) -> str:
    """The database's own words for ``exc`` (SQLAlchemy's wrapper dropped), password scrubbed."""
    orig = getattr(exc, "orig", None) or exc
    diag: Any = getattr(orig, "diag", None)  # psycopg: the server's primary message, detail and hint
    primary = getattr(diag, "message_primary", None)
    if primary:
        text = str(primary)
        if getattr(diag, "message_detail", None):
            text += f" ({diag.message_detail})"
        if getattr(diag, "message_hint", None):
            text += f"; hint: {diag.message_hint}"
    else:
        text = str(orig) or type(orig).__name__
    text = re.sub(r"\s+", " ", target.scrub(text)).strip()
    return text[:DB_MESSAGE_MAX]


# ---------------------------------------------------------------------------------------------
# The query
# ---------------------------------------------------------------------------------------------


def _run_query(
    engine: sqlalchemy.engine.Engine,
    target: Target,
    *,
    source: api_sources.SqlSource,
    index: int,
    where: str,
) -> pd.DataFrame:
    backend = target.url.get_backend_name()
    deadline = time.monotonic() + source.timeout_seconds
    query = source.query.strip().rstrip(";").strip()
    LOG.info("%s: connecting to %s", where, target.shown)
    try:
        conn = engine.connect()
    except sa_exc.DBAPIError as exc:
        raise runtime.WorkloadError(
            "ConnectionFailed",
            f"{where}: cannot connect to {target.shown}: {db_message(exc, target)}; check the URL in the "
            "Secret (host, port, user, password, database) and that the pod can reach the database",
        ) from None
    timed_out: list[bool] = []
    with conn:
        try:
            conn = conn.execution_options(no_parameters=True)  # the query's % and : are its own
            if backend == "postgresql":
                conn = conn.execution_options(postgresql_readonly=True)
                conn.exec_driver_sql(f"SET statement_timeout = {int(source.timeout_seconds) * 1000}")
            elif backend == "sqlite":
                conn.exec_driver_sql("PRAGMA query_only = ON")
                _sqlite_deadline(conn, deadline, timed_out)
            result = conn.execution_options(stream_results=True, yield_per=CHUNK_ROWS).exec_driver_sql(query)
            names = list(map(str, result.keys()))
            declared = _declared_kinds(result, backend=backend, width=len(names))
            chunks: list[list[pd.Series]] = []
            for rows in result.partitions():
                chunks.append(_typed_chunk(rows, names=names, declared=declared, where=where))
                if time.monotonic() > deadline:
                    timed_out.append(True)
                    break
            result.close()
        except sa_exc.DBAPIError as exc:
            state = getattr(getattr(exc, "orig", None), "sqlstate", None)
            if timed_out or state == PG_QUERY_CANCELED:
                raise _timeout(source, index=index, where=where, detail=db_message(exc, target)) from None
            raise runtime.WorkloadError(
                "QueryFailed",
                f"{where}: {target.shown} refused the query: {db_message(exc, target)}; fix spec.sources"
                f"[{index}].sql.query (one SELECT that the Secret's user may run)",
            ) from None
        except sa_exc.ResourceClosedError:
            raise runtime.WorkloadError(
                "QueryFailed",
                f"{where}: the statement returns no result set; spec.sources[{index}].sql.query must be "
                "a SELECT",
            ) from None
    if timed_out:
        raise _timeout(source, index=index, where=where, detail="the rows were still being read")
    return _assemble(chunks, names=names, where=where)


def _timeout(source: api_sources.SqlSource, *, index: int, where: str, detail: str) -> runtime.WorkloadError:
    return runtime.WorkloadError(
        "QueryTimeout",
        f"{where}: the query took longer than timeoutSeconds ({source.timeout_seconds}s): {detail}; "
        f"raise spec.sources[{index}].sql.timeoutSeconds or make the query cheaper",
    )


def _sqlite_deadline(conn: sqlalchemy.engine.Connection, deadline: float, flag: list[bool]) -> None:
    """Interrupt a running SQLite statement past ``deadline`` (sqlite3 has no statement timeout)."""

    def check() -> int:
        if time.monotonic() > deadline:
            flag.append(True)
            return 1
        return 0

    driver = conn.connection.driver_connection
    set_handler: Callable[[Callable[[], int], int], None] | None = getattr(
        driver, "set_progress_handler", None
    )
    if set_handler is not None:
        set_handler(check, SQLITE_PROGRESS_STEPS)


def _declared_kinds(
    result: sqlalchemy.engine.CursorResult[Any], *, backend: str, width: int
) -> list[Kind | None]:
    """Each column's kind from the driver's type codes (PostgreSQL's OIDs); None where unknown."""
    description = getattr(result.cursor, "description", None) or []
    kinds: list[Kind | None] = [None] * width
    if backend == "postgresql":
        for i, column in enumerate(description[:width]):
            code = column[1]
            kinds[i] = PG_KINDS.get(code) if isinstance(code, int) else None
    return kinds


# ---------------------------------------------------------------------------------------------
# Types: Python values → typed pandas columns
# ---------------------------------------------------------------------------------------------


def value_kind(values: Sequence[Any]) -> Kind:
    """The kind of one chunk of a column whose type the driver did not say (SQLite)."""
    kinds: set[Kind] = set()
    for v in values:
        if v is None:
            continue
        if isinstance(v, bool | np.bool_):
            kinds.add("bool")
        elif isinstance(v, int | np.integer):
            kinds.add("int")
        elif isinstance(v, float | decimal.Decimal | np.floating):
            kinds.add("float")
        elif isinstance(v, datetime.date):  # datetime.datetime is a date too
            kinds.add("datetime")
        elif isinstance(v, bytes | bytearray | memoryview):
            kinds.add("binary")
        else:
            kinds.add("text")
    kind: Kind = "null"
    for k in kinds:
        kind = widen(kind, k)
    return kind


def widen(a: Kind, b: Kind) -> Kind:
    """The kind that holds values of both kinds (int and float → float; a text value → text)."""
    if b in (a, "null"):
        return a
    if a == "null":
        return b
    if "binary" in (a, b):
        return "binary"
    numeric = ("bool", "int", "float")
    if a in numeric and b in numeric:
        return a if numeric.index(a) > numeric.index(b) else b
    return "text"


def _typed_chunk(
    rows: Sequence[Any], *, names: list[str], declared: list[Kind | None], where: str
) -> list[pd.Series]:
    columns: list[pd.Series] = []
    for j, name in enumerate(names):
        values = [row[j] for row in rows]
        kind = declared[j] or value_kind(values)
        columns.append(convert(values, kind, name=name, where=where))
    return columns


def convert(values: Sequence[Any], kind: Kind, *, name: str, where: str) -> pd.Series:
    """One chunk of a column as a pandas Series of ``kind``."""
    if kind == "binary":
        raise runtime.WorkloadError(
            "SchemaMismatch",
            f"{where}: column {name!r} holds binary data (bytea/BLOB), which a Dataset cannot use; leave "
            "it out of the SELECT or cast it to text",
        )
    if kind == "null":
        return pd.Series(np.full(len(values), np.nan), dtype="float64")
    if kind == "float":
        out = np.fromiter(
            (np.nan if v is None else float(v) for v in values), dtype="float64", count=len(values)
        )
        return pd.Series(out, dtype="float64")
    if kind == "int":
        try:
            return pd.Series(pd.array([None if v is None else int(v) for v in values], dtype="Int64"))
        except (OverflowError, TypeError, ValueError):
            return convert(values, "float", name=name, where=where)
    if kind == "bool":
        return pd.Series(pd.array([None if v is None else bool(v) for v in values], dtype="boolean"))
    if kind == "datetime":
        try:
            aware = any(isinstance(v, datetime.datetime) and v.tzinfo is not None for v in values)
            return pd.Series(pd.to_datetime(list(values), utc=aware))
        except (ValueError, TypeError, OverflowError, pd.errors.OutOfBoundsDatetime):
            return convert(values, "text", name=name, where=where)
    return pd.Series([None if v is None else _text(v) for v in values])


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def cast(series: pd.Series, kind: Kind, *, like: pd.Series | None = None) -> pd.Series:
    """A chunk's Series widened to the column's final ``kind`` (``like``: a chunk already of it)."""
    if _series_kind(series) == kind:
        return series
    if kind == "float":
        return pd.Series(series.to_numpy(dtype="float64", na_value=np.nan), dtype="float64")
    if kind == "int":
        return series.astype("Int64")
    if kind == "bool":  # only an all-missing chunk widens to bool
        return pd.Series(pd.array([None] * len(series), dtype="boolean"))
    if kind == "datetime":  # likewise
        return pd.Series([pd.NaT] * len(series), dtype=like.dtype if like is not None else "datetime64[ns]")
    present = series.notna().to_numpy()
    return pd.Series([_text(v) if ok else None for v, ok in zip(series.tolist(), present, strict=True)])


def _series_kind(series: pd.Series) -> Kind:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if pd.api.types.is_float_dtype(dtype):
        return "null" if bool(series.isna().all()) else "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "text"


def _assemble(chunks: list[list[pd.Series]], *, names: list[str], where: str) -> pd.DataFrame:
    if not names:
        raise runtime.WorkloadError("SourceEmpty", f"{where}: the query returned no columns")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise runtime.WorkloadError(
            "SchemaMismatch",
            f"{where}: the query returns duplicate column names {dupes}; name them apart with AS",
        )
    if not chunks or not any(len(chunk[0]) for chunk in chunks):
        raise runtime.WorkloadError(
            "SourceEmpty",
            f"{where}: the query returned no rows (columns {names[:10]}); check its WHERE clause and that "
            "the table holds data",
        )
    data: dict[str, pd.Series] = {}
    for j, name in enumerate(names):
        parts = [chunk[j] for chunk in chunks]
        kind: Kind = "null"
        for part in parts:
            kind = widen(kind, _series_kind(part))
        like = next((p for p in parts if _series_kind(p) == kind), None)
        parts = [cast(p, kind, like=like) for p in parts]
        column = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        if kind == "datetime" and column.dtype == object:  # time zones mixed across chunks
            column = cast(column, "text")
        data[name] = column.reset_index(drop=True)
    frame = pd.DataFrame(data)
    LOG.info("%s: %d rows, %d columns", where, len(frame), len(frame.columns))
    return frame
