"""peewee models and schema migration.

SQLite (the default) runs in WAL mode with synchronous=FULL, so a committed
row survives a crash. A ``postgresql://`` URL works as well: nothing here is
SQLite-only SQL.
"""
from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import peewee as pw
from playhouse.db_url import connect

database = pw.DatabaseProxy()

# Public ids are short opaque strings (the original used 6 characters such as
# "XyZ123"); the row id never leaves the core.
_ALPHABET = string.ascii_letters + string.digits


def new_public_id(length: int = 6, alphabet: str = _ALPHABET) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def now() -> int:
    return int(time.time())


class BaseModel(pw.Model):
    class Meta:
        database = database

    if TYPE_CHECKING:
        # types-peewee declares Model.delete as a generic descriptor that mypy
        # cannot resolve on a class ("generic instance variables via class").
        @classmethod
        def delete(cls) -> pw.ModelDelete: ...


class User(BaseModel):
    id = pw.AutoField()  # what peewee adds when a model has no primary key; named for the type checker
    public_id = pw.CharField(max_length=16, unique=True)
    username = pw.CharField(max_length=64, unique=True)
    display_name = pw.CharField(max_length=128)
    password_hash = pw.CharField(max_length=255)
    is_admin = pw.BooleanField(default=False)
    created_at = pw.BigIntegerField(default=now)


class ApiToken(BaseModel):
    id = pw.CharField(max_length=32, primary_key=True)
    user = pw.ForeignKeyField(User, backref="tokens", on_delete="CASCADE")
    name = pw.CharField(max_length=64)
    scopes = pw.TextField()  # JSON object: scope -> [actions]
    token_sha256 = pw.CharField(max_length=64, unique=True)
    expires_at = pw.BigIntegerField(null=True)
    last_used_at = pw.BigIntegerField(null=True)
    created_at = pw.BigIntegerField(default=now)
    # A service account's token (its scopes are the account's, read on every
    # use); None for a person's own token. Deleted with the account.
    service_account_id = pw.CharField(max_length=16, null=True, index=True)


class ServiceAccount(BaseModel):
    """Automation's identity: owned by the user who made it, acting only on
    that user's resources, within its scopes (docs/accounts.md)."""
    id = pw.CharField(max_length=16, primary_key=True)
    owner = pw.ForeignKeyField(User, backref="service_accounts", on_delete="CASCADE")
    name = pw.CharField(max_length=64)
    scopes = pw.TextField()  # JSON object: scope -> [actions], as a token's
    created_at = pw.BigIntegerField(default=now)

    class Meta:
        table_name = "service_account"
        indexes = ((("owner", "name"), True),)


class RevokedSession(BaseModel):
    """A session JWT revoked by logout, kept until it would have expired anyway."""
    jti = pw.CharField(max_length=64, primary_key=True)
    expires_at = pw.BigIntegerField(index=True)


class LoginSession(BaseModel):
    """A session JWT issued at login, for the admins' session list; the JWT
    (and RevokedSession) stays what authenticates. Removed at logout and with
    its user, pruned once expired."""
    id = pw.CharField(max_length=64, primary_key=True)  # the JWT's jti
    user = pw.ForeignKeyField(User, backref="login_sessions", on_delete="CASCADE")
    user_id: int  # peewee's accessor for the key column, declared for the type checker
    ip_address = pw.CharField(max_length=64, default="")
    user_agent = pw.CharField(max_length=256, default="")
    created_at = pw.BigIntegerField(default=now)
    last_seen_at = pw.BigIntegerField(default=now)
    expires_at = pw.BigIntegerField(index=True)

    class Meta:
        table_name = "login_session"


class SchemaVersion(BaseModel):
    version = pw.IntegerField()


# Every model, in creation order. Services append their own models here
# (appliance.core.<service>_models) before migrate() runs.
MODELS: list[type[BaseModel]] = [SchemaVersion, User, ApiToken, RevokedSession, LoginSession, ServiceAccount]

# Numbered migrations for schemas that already exist: version -> function(db).
# Version 1 is the initial schema created by create_tables. A new table needs
# no migration: create_tables(safe=True) adds it to an existing database
# (login_session came that way; tests/unit/test_sessions.py opens an old one).
def _container_host(db: pw.Database) -> None:
    """2: each container records the host that runs it (core/compute/models.py)."""
    db.execute_sql("ALTER TABLE container ADD COLUMN host VARCHAR(64) NOT NULL DEFAULT ''")
    db.execute_sql("CREATE INDEX container_host ON container (host)")


def _session_user_agent(db: pw.Database) -> None:
    """3: each login session records the client's User-Agent (GET /api/settings/sessions).
    A database from before login_session gets the table, column included, from create_tables."""
    if db.table_exists("login_session") and "user_agent" not in [c.name for c in db.get_columns("login_session")]:
        db.execute_sql("ALTER TABLE login_session ADD COLUMN user_agent VARCHAR(256) NOT NULL DEFAULT ''")


def _token_service_account(db: pw.Database) -> None:
    """4: an API token may belong to a service account (its index comes from create_tables)."""
    if "service_account_id" not in [c.name for c in db.get_columns("apitoken")]:
        db.execute_sql("ALTER TABLE apitoken ADD COLUMN service_account_id VARCHAR(16)")


def _second_factor_at_rest(db: pw.Database) -> None:
    """5: TOTP secrets are stored encrypted (core/auth/second_factor.py), longer
    than the 64 characters of a plain one (SQLite does not enforce lengths).
    Security keys' table (webauthn_credential) comes from create_tables."""
    if isinstance(db, pw.PostgresqlDatabase) and db.table_exists("totp_secret"):
        db.execute_sql("ALTER TABLE totp_secret ALTER COLUMN secret TYPE VARCHAR(255)")


MIGRATIONS: dict[int, Callable[[pw.Database], None]] = {2: _container_host, 3: _session_user_agent,
                                                        4: _token_service_account, 5: _second_factor_at_rest}
SCHEMA_VERSION = 5
# Cores of several hosts may start at once on one PostgreSQL: the schema work
# is serialised by this transaction-level advisory lock (any fixed number).
_MIGRATION_LOCK = 0x61707031
_CREATES_LOCK = 0x61707032


def creates_lock() -> None:
    """Within a transaction: creates of containers on every core of one
    PostgreSQL one at a time, so the per-user limit and a host's room are
    counted with every earlier create committed (a host alone, on SQLite, has
    one writer already). Released at commit or rollback."""
    if isinstance(database.obj, pw.PostgresqlDatabase):
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_CREATES_LOCK,))


class Prepared:
    """``SELECT * FROM model WHERE key = ?`` compiled once, run with fresh values.

    peewee spends ~200 us building SQL for each query; the per-request auth
    lookups run this instead (~3 us) while staying portable SQL.
    """

    def __init__(self, model: type[BaseModel], key: pw.Field):
        self.model = model
        self.fields = model._meta.sorted_fields
        self.sql, _ = model.select(*self.fields).where(key == "?").sql()

    def first(self, value):
        row = self.model._meta.database.execute_sql(self.sql, (value,)).fetchone()
        if row is None:
            return None
        return self.model(**{f.name: f.python_value(v) for f, v in zip(self.fields, row, strict=True)})


def register(*models: type[BaseModel]) -> None:
    for model in models:
        if model not in MODELS:
            MODELS.append(model)


def open_database(url: str) -> pw.Database:
    """Connect the proxy to *url* and bring the schema up to date."""
    if url.startswith("sqlite:"):
        db = connect(url, pragmas={
            "journal_mode": "wal",
            "synchronous": "full",
            "foreign_keys": 1,
            "busy_timeout": 5000,
        })
        # Transactions take the write lock at BEGIN (IMMEDIATE), waiting up to
        # busy_timeout for it: a deferred one that read first fails at once with
        # "database is locked" when another connection (the metrics sampler's
        # thread) committed meanwhile, whatever busy_timeout says.
        db._lock_type = "IMMEDIATE"   # peewee's SqliteDatabase.begin() default
    else:
        db = connect(url)
    database.initialize(db)
    migrate(db)
    return db


def migrate(db: pw.Database) -> None:
    """Numbered migrations first (they alter tables that exist), then any new
    table with its indexes, then the version."""
    with db.atomic():
        if isinstance(db, pw.PostgresqlDatabase):
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        row = SchemaVersion.select().first() if db.table_exists(SchemaVersion._meta.table_name) else None
        if row is not None:
            for version in range(row.version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version](db)
        db.create_tables(MODELS, safe=True)
        if row is None:
            SchemaVersion.create(version=SCHEMA_VERSION)
        elif row.version != SCHEMA_VERSION:
            row.version = SCHEMA_VERSION
            row.save()
