"""A host alone grows into a cluster: its SQLite database moved into PostgreSQL
(``appliance db migrate``; the operator's steps are in docs/cluster-migrate.md).

- Both schemas are brought to this version first, as a core does at start
  (``db.migrate``): the source if it is older, the target's tables created.
- Every table of ``db.MODELS`` (the core's own: ``appliance.core.server``
  registers them all) is copied in foreign-key order, ids included, inside
  one transaction on the target; then the serial sequences are moved past
  the copied ids, and each table's row count is read back and compared with
  the source's. Any failure rolls everything back.
- Idempotent: a target that already holds exactly the source's rows is left
  alone ("unchanged"); a target holding anything else is refused, never
  merged into. ``schemaversion`` is the target's own (written by its
  migration), not copied.
- A table in the source that this version does not know refuses the move
  (its rows would be lost).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import peewee as pw
from playhouse.db_url import connect

from appliance.core import db

BATCH = 1000  # rows per INSERT statement
# Serialises two runs against one target (a transaction-level advisory lock; any fixed number).
_MOVE_LOCK = 0x61707032
_POSTGRES_SCHEMES = ("postgres", "postgresql", "postgresext", "postgresqlext")


class MoveError(Exception):
    """The move was refused or failed; nothing changed in the target."""


@dataclass
class Moved:
    copied: bool                                   # False: the target held this data already
    counts: list[tuple[str, int]] = field(default_factory=list)  # (table, rows) in copy order

    @property
    def rows(self) -> int:
        return sum(n for _, n in self.counts)


def shown(url: str) -> str:
    """``url`` with its password hidden, for messages: whatever stands between
    the user name and the last "@" (unencoded "/", "#" or "@" included), and a
    ``password=`` query parameter."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, hostpart = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.split(':', 1)[0]}:***@{hostpart}"
    base, q, query = rest.partition("?")
    if q:
        params = ("password=***" if p.lower().startswith("password=") else p for p in query.split("&"))
        base = f"{base}?{'&'.join(params)}"
    return f"{scheme}://{base}"


def _models() -> list[type[db.BaseModel]]:
    from appliance.core import server  # noqa: F401 - registers every model the core has
    return [m for m in pw.sort_models(db.MODELS)  # type: ignore[attr-defined] # not in the stubs
            if m is not db.SchemaVersion]


def _open_source(url: str) -> pw.Database:
    if not url.startswith("sqlite:///"):
        raise MoveError(f"the source must be a SQLite database (sqlite:///path), not {shown(url)}")
    path = Path(url[len("sqlite:///"):])
    if not path.is_file():
        raise MoveError(f"no SQLite database at {path}")
    return connect(url, pragmas={"foreign_keys": 1, "busy_timeout": 5000})


def _open_target(url: str) -> pw.Database:
    if urlsplit(url).scheme not in _POSTGRES_SCHEMES:
        raise MoveError(f"the target must be a PostgreSQL URL (postgresql://...), not {shown(url)}")
    target = connect(url)
    try:
        target.connect()
    except pw.OperationalError as e:
        raise MoveError(f"cannot reach {shown(url)}: {str(e).strip()}") from None
    return target


def _ordered(model) -> list:
    pk = model._meta.primary_key
    if isinstance(pk, pw.CompositeKey):
        return [model._meta.fields[name] for name in pk.field_names]
    return [pk]


def _rows(model) -> list[tuple]:
    return list(model.select(*model._meta.sorted_fields).order_by(*_ordered(model)).tuples())


def _same(a: list[tuple], b: list[tuple]) -> bool:
    """Equal rows; floats compared loosely (peewee's FloatField is REAL, 4 bytes, in PostgreSQL)."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        for va, vb in zip(ra, rb, strict=True):
            if isinstance(va, float) or isinstance(vb, float):
                if va is None or vb is None or not math.isclose(va, vb, rel_tol=1e-6, abs_tol=1e-9):
                    return False
            elif va != vb:
                return False
    return True


def _read_source(source: pw.Database, models) -> dict[type, list[tuple]]:
    known = {m._meta.table_name for m in models} | {db.SchemaVersion._meta.table_name}
    unknown = sorted(t for t in source.get_tables() if t not in known and not t.startswith("sqlite_"))
    if unknown:
        raise MoveError(f"the source has tables this version does not know: {', '.join(unknown)} "
                        "(run the appliance version that wrote them)")
    with source.bind_ctx([db.SchemaVersion, *models]):
        db.migrate(source)  # an older source first gets this version's schema, as at a core's start
        with source.atomic():  # one consistent snapshot
            return {m: _rows(m) for m in models}


def _insert(target: pw.Database, model, rows: list[tuple]) -> None:
    """The rows, as they are, ids included; psycopg2's execute_values builds the
    statements (peewee's insert_many took 2-3x longer, building the SQL: bench_dbmove)."""
    import psycopg2  # PostgreSQL only, as the "postgres" extra
    from psycopg2.extras import execute_values
    fields = model._meta.sorted_fields
    columns = ", ".join(f'"{f.column_name}"' for f in fields)
    sql = f'INSERT INTO "{model._meta.table_name}" ({columns}) VALUES %s'
    cursor = target.cursor()
    try:
        execute_values(cursor, sql, [tuple(f.db_value(v) for f, v in zip(fields, row, strict=True))
                                     for row in rows], page_size=BATCH)
    except psycopg2.Error as e:   # a broken reference, a value too long for its column, ...
        raise MoveError(f"table {model._meta.table_name}: PostgreSQL refused a row: {str(e).strip()}") from None


def _reset_sequences(target: pw.Database, models) -> None:
    for m in models:
        pk = m._meta.primary_key
        if isinstance(pk, pw.AutoField):
            table, column = m._meta.table_name, pk.column_name
            target.execute_sql(
                f'SELECT setval(pg_get_serial_sequence(%s, %s), '
                f'COALESCE((SELECT MAX("{column}") FROM "{table}"), 0) + 1, false)',
                (f'"{table}"', column))


def move(source_url: str, target_url: str) -> Moved:
    """Copy the SQLite database at ``source_url`` into the PostgreSQL at ``target_url``."""
    models = _models()
    target = _open_target(target_url)
    try:
        source = _open_source(source_url)
    except MoveError:
        target.close()
        raise
    try:
        try:
            wanted = _read_source(source, models)
        except pw.DatabaseError as e:  # unreadable, not a database, locked
            raise MoveError(f"cannot read {shown(source_url)}: {str(e).strip()}") from None
        try:
            with target.bind_ctx([db.SchemaVersion, *models]):
                db.migrate(target)
                with target.atomic():
                    target.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_MOVE_LOCK,))
                    return _copy(target, models, wanted)
        except pw.DatabaseError as e:  # e.g. no right to create the tables
            raise MoveError(f"{shown(target_url)}: {str(e).strip()}; nothing was changed") from None
    finally:
        source.close()
        target.close()


def _copy(target: pw.Database, models, wanted: dict[type, list[tuple]]) -> Moved:
    counts = [(m._meta.table_name, len(wanted[m])) for m in models]
    present = {m: _rows(m) for m in models}
    if all(_same(present[m], wanted[m]) for m in models):
        return Moved(copied=False, counts=counts)
    filled = [(m._meta.table_name, len(present[m])) for m in models if present[m]]
    if filled:
        listed = ", ".join(f"{t} ({n} rows)" for t, n in filled)
        raise MoveError(f"the target already holds other data: {listed}; refusing to merge into it. "
                        "Move into an empty database (drop and create it again if a core ran on it).")
    for m in models:
        _insert(target, m, wanted[m])
    _reset_sequences(target, models)
    for (table, expected), m in zip(counts, models, strict=True):
        got = m.select().count()
        if got != expected:
            raise MoveError(f"table {table}: {got} rows after the copy, the source has {expected}; "
                            "rolled back")
    return Moved(copied=True, counts=counts)
