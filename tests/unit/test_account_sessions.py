"""A user's own sessions (core/auth/sessions.py): listed with the caller's
marked, ended one / all / all but one; and migration 3, which gives
login_session its user_agent column (docs/accounts.md)."""
from __future__ import annotations

import peewee as pw
import pytest

from appliance.core import db
from appliance.core.auth import sessions, users
from appliance.core.auth.identity import Tokens
from appliance.core.db import LoginSession, open_database
from appliance.errors import Unauthenticated


@pytest.fixture
def tokens(tmp_path):
    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    return Tokens("s" * 32)


def test_own_sessions_are_the_users_live_ones_with_the_current_marked(tokens):
    alice = users.create_user("alice", "alice-pass-1", None, False)
    bob = users.create_user("bob", "bob-pass-1", None, False)
    a1 = tokens.authenticate(tokens.issue_session(alice, "192.0.2.1", "Firefox/128"))
    a2 = tokens.authenticate(tokens.issue_session(alice, "192.0.2.2", "curl/8.5"))
    tokens.issue_session(bob, "192.0.2.3")
    listed = sessions.own_sessions(alice, a2.jti)
    assert {s["id"]: (s["is_current"], s["user_agent"], s["ip_address"]) for s in listed} == {
        a1.jti: (False, "Firefox/128", "192.0.2.1"), a2.jti: (True, "curl/8.5", "192.0.2.2")}
    assert set(listed[0]) == {"id", "ip_address", "created_at", "is_current", "user_agent", "last_seen_at"}
    tokens.revoke_session(a1)   # logged out: not listed
    assert [s["id"] for s in sessions.own_sessions(alice, a2.jti)] == [a2.jti]


def test_ending_sessions_revokes_them_and_touches_no_one_else(tokens):
    alice = users.create_user("alice", "alice-pass-1", None, False)
    bob = users.create_user("bob", "bob-pass-1", None, False)
    mine = [tokens.issue_session(alice) for _ in range(3)]
    theirs = tokens.issue_session(bob)
    keep = tokens.authenticate(mine[0]).jti
    one = tokens.authenticate(mine[1]).jti
    # someone else's session id is not found through alice
    assert sessions.end_sessions(alice, only=tokens.authenticate(theirs).jti) == []
    assert sessions.end_sessions(alice, only=one) == [alice.public_id]
    with pytest.raises(Unauthenticated, match="logged out"):
        tokens.authenticate(mine[1])
    assert sessions.end_sessions(alice, keep=keep) == [alice.public_id]
    with pytest.raises(Unauthenticated):
        tokens.authenticate(mine[2])
    assert tokens.authenticate(mine[0]).jti == keep
    assert tokens.authenticate(theirs).user.username == "bob"
    assert sessions.end_sessions(alice, keep=keep) == []   # nothing left to end
    # an admin ends anyone's session by id alone
    assert sessions.end_sessions(only=keep) == [alice.public_id]
    with pytest.raises(Unauthenticated):
        tokens.authenticate(mine[0])


def test_ending_hundreds_of_sessions_at_once(tokens):
    carol = users.create_user("carol", "carol-pass-1", None, False)
    issued = [tokens.issue_session(carol) for _ in range(450)]   # beyond one statement's variables
    assert sessions.end_sessions(carol) == [carol.public_id]
    assert LoginSession.select().count() == 0
    for token in issued[::50]:
        with pytest.raises(Unauthenticated):
            tokens.authenticate(token)


def _version_2(path, with_sessions: bool):
    old = pw.SqliteDatabase(str(path), pragmas={"foreign_keys": 1})
    db.database.initialize(old)
    old.create_tables([m for m in db.MODELS if with_sessions or m is not LoginSession])
    if with_sessions:
        old.execute_sql("ALTER TABLE login_session DROP COLUMN user_agent")
    db.SchemaVersion.create(version=2)
    user = users.create_user("olduser", "old-pass-1", None, False)
    if with_sessions:
        old.execute_sql("INSERT INTO login_session (id, user_id, ip_address, created_at, last_seen_at, expires_at)"
                        " VALUES ('j1', ?, '203.0.113.1', 1, 1, 4000000000)", (user.id,))
    old.close()


@pytest.mark.parametrize("with_sessions", [True, False])
def test_migration_3_adds_the_user_agent_column(tmp_path, with_sessions):
    path = tmp_path / "v2.sqlite"
    _version_2(path, with_sessions)
    open_database(f"sqlite:///{path}")
    assert db.SchemaVersion.get().version == db.SCHEMA_VERSION == 5
    assert "user_agent" in [c.name for c in db.database.get_columns("login_session")]
    if with_sessions:
        row = LoginSession.get_by_id("j1")
        assert (row.ip_address, row.user_agent) == ("203.0.113.1", "")
