"""A service account's token (core/auth/identity.py): its scopes are the
account's, read on every use; without the account it is revoked; migration 4
adds apitoken.service_account_id to an existing database."""
from __future__ import annotations

import json

import peewee as pw
import pytest

from appliance.core import db
from appliance.core.auth import users
from appliance.core.auth.identity import Tokens, sha256
from appliance.core.db import ApiToken, ServiceAccount, open_database
from appliance.errors import Unauthenticated


@pytest.fixture
def tokens(tmp_path):
    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    return Tokens("s" * 32)


def test_a_service_account_token_has_the_accounts_scopes_now(tokens):
    alice = users.create_user("alice", "alice-pass-1", None, False)
    scopes = {f"compute.{alice.public_id}": ["read"]}
    ServiceAccount.create(id="sa_1", owner=alice, name="ci", scopes=json.dumps(scopes))
    token = tokens.issue_api_token(alice, "tok1", scopes, None, "sa_1")
    ApiToken.create(id="tok1", user=alice, name="t", scopes=json.dumps(scopes), token_sha256=sha256(token),
                    service_account_id="sa_1")
    principal = tokens.authenticate(token)
    assert principal.kind == "api_token" and principal.scopes == scopes and principal.user.username == "alice"
    wider = {**scopes, f"storage.{alice.public_id}": ["create"]}
    ServiceAccount.update(scopes=json.dumps(wider)).execute()
    assert tokens.authenticate(token).scopes == wider   # the memoised claims hold no scopes
    ServiceAccount.delete().execute()   # the token row left behind by another process: still refused
    with pytest.raises(Unauthenticated, match="revoked"):
        tokens.authenticate(token)


def test_migration_4_adds_the_column(tmp_path):
    path = tmp_path / "v3.sqlite"
    old = pw.SqliteDatabase(str(path), pragmas={"foreign_keys": 1})
    db.database.initialize(old)
    old.create_tables([m for m in db.MODELS if m is not ServiceAccount])
    old.execute_sql("DROP INDEX apitoken_service_account_id")
    old.execute_sql("ALTER TABLE apitoken DROP COLUMN service_account_id")
    db.SchemaVersion.create(version=3)
    alice = users.create_user("alice", "alice-pass-1", None, False)
    old.execute_sql("INSERT INTO apitoken (id, user_id, name, scopes, token_sha256, created_at)"
                    " VALUES ('t1', ?, 'old', '{}', 'abc', 1)", (alice.id,))
    old.close()
    open_database(f"sqlite:///{path}")
    assert db.SchemaVersion.get().version == db.SCHEMA_VERSION
    assert ApiToken.get_by_id("t1").service_account_id is None
    assert "apitoken_service_account_id" in {i.name for i in db.database.get_indexes("apitoken")}
    assert "service_account" in db.database.get_tables()
