"""The login_session table behind GET /admin/sessions (core/auth/identity.py,
users.live_sessions): a row per login, last_seen_at written at most once a
SESSION_SEEN_RESOLUTION, gone at logout and with its user, expired rows
pruned; an existing database gets the table."""
from __future__ import annotations

import asyncio
import time

import peewee as pw
import pytest

from appliance.core import db
from appliance.core.auth import identity, users
from appliance.core.auth.identity import Tokens
from appliance.core.db import LoginSession, RevokedSession, open_database
from appliance.errors import Unauthenticated


@pytest.fixture
def tokens(tmp_path):
    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    return Tokens("s" * 32)


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_a_login_is_listed_with_its_user_and_address(tokens):
    alice = users.create_user("alice", "alice-pass-1", "Alice A.", False)
    tokens.issue_session(alice, "192.0.2.7")
    [s] = users.live_sessions()
    row = LoginSession.get()
    assert s == {"id": row.id, "user_id": alice.public_id, "username": "alice", "display_name": "Alice A.",
                 "ip_address": "192.0.2.7", "created_at": row.created_at, "last_seen_at": row.created_at}
    assert row.expires_at - row.created_at == tokens.session_ttl
    assert len(row.id) == 32


def test_last_seen_is_written_at_most_once_a_resolution(tokens, monkeypatch):
    start = int(time.time()) - 200   # the JWT's iat must not lie in the future
    clock = Clock(float(start))
    monkeypatch.setattr(identity.time, "time", clock)
    bob = users.create_user("bob", "bob-pass-1", None, False)
    token = tokens.issue_session(bob, "::1")
    clock.t += 1
    tokens.authenticate(token)   # the first use is written
    assert LoginSession.get().last_seen_at == start + 1
    # a marker no write of the core would put there: shows whether a request wrote
    LoginSession.update(last_seen_at=7).execute()
    for _ in range(50):
        clock.t += 1   # 50 s of requests, one a second
        tokens.authenticate(token)
    assert LoginSession.get().last_seen_at == 7
    clock.t += 11
    tokens.authenticate(token)
    assert LoginSession.get().last_seen_at == start + 62
    LoginSession.update(last_seen_at=7).execute()
    clock.t += 59
    tokens.authenticate(token)
    assert LoginSession.get().last_seen_at == 7


def test_the_seen_cache_is_bounded(tokens, monkeypatch):
    monkeypatch.setattr(identity, "SEEN_CACHE_SIZE", 8)
    carol = users.create_user("carol", "carol-pass-1", None, False)
    for _ in range(30):
        tokens.authenticate(tokens.issue_session(carol))
    assert len(tokens._seen) <= 8 and len(users.live_sessions()) == 30


def test_logout_removes_the_session_and_still_revokes_it(tokens):
    dave = users.create_user("dave", "dave-pass-1", None, False)
    kept, gone = tokens.issue_session(dave), tokens.issue_session(dave)
    principal = tokens.authenticate(gone)
    tokens.revoke_session(principal)
    assert [s["id"] for s in users.live_sessions()] == [tokens.authenticate(kept).jti]
    assert RevokedSession.get_or_none(RevokedSession.jti == principal.jti) is not None
    with pytest.raises(Unauthenticated):
        tokens.authenticate(gone)


def test_expired_and_deleted_users_sessions_are_not_listed(tokens, monkeypatch):
    erin = users.create_user("erin", "erin-pass-1", None, False)
    frank = users.create_user("frank", "frank-pass-1", None, False)
    tokens.issue_session(erin)
    tokens.issue_session(frank)
    LoginSession.update(expires_at=db.now() - 1).where(LoginSession.user == erin).execute()
    assert [s["username"] for s in users.live_sessions()] == ["frank"]
    tokens.issue_session(frank)   # a login prunes the expired rows
    assert LoginSession.select().where(LoginSession.user == erin).count() == 0
    asyncio.run(users.delete_user(frank))
    assert LoginSession.select().count() == 0
    # deleted outside the core (the CLI's SQL): the foreign key cascades
    gina = users.create_user("gina", "gina-pass-1", None, False)
    tokens.issue_session(gina)
    db.User.delete().where(db.User.id == gina.id).execute()
    assert LoginSession.select().count() == 0


def test_an_existing_database_gets_the_table(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    old = pw.SqliteDatabase(str(tmp_path / "old.sqlite"), pragmas={"foreign_keys": 1})
    db.database.initialize(old)
    before = [m for m in db.MODELS if m is not LoginSession]   # the schema as it was
    old.create_tables(before)
    db.SchemaVersion.create(version=db.SCHEMA_VERSION)
    old_user = users.create_user("olduser", "old-pass-1", None, False)
    old.close()
    assert "login_session" not in pw.SqliteDatabase(str(tmp_path / "old.sqlite")).get_tables()

    open_database(url)
    assert "login_session" in db.database.get_tables()
    tokens = Tokens("s" * 32)
    token = tokens.issue_session(db.User.get(db.User.public_id == old_user.public_id), "203.0.113.9")
    assert tokens.authenticate(token).user.username == "olduser"
    assert [s["ip_address"] for s in users.live_sessions()] == ["203.0.113.9"]


def test_a_session_from_before_the_table_is_listed_once_used(tokens):
    hana = users.create_user("hana", "hana-pass-1", None, False)
    token = tokens.issue_session(hana, "198.51.100.4")
    LoginSession.delete().execute()   # as if issued by the previous version
    tokens._seen.clear()              # a restarted core
    principal = tokens.authenticate(token)
    [s] = users.live_sessions()
    assert (s["id"], s["username"], s["ip_address"]) == (principal.jti, "hana", "")
    assert s["created_at"] <= s["last_seen_at"]
    tokens.revoke_session(principal)
    assert users.live_sessions() == []
