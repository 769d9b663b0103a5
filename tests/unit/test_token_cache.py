"""The core's verified-claims cache (appliance/core/auth/identity.py): keyed by the
token's sha256, bounded in bytes, and a revoked token's entry is dropped at once
(red team: 34 KB tokens created, used once and deleted grew the core by ~250 MB)."""
from __future__ import annotations

import pytest

from appliance.core.auth import identity, users
from appliance.core.auth.identity import Tokens, sha256
from appliance.core.db import ApiToken, now, open_database
from appliance.errors import Unauthenticated


@pytest.fixture
def tokens(tmp_path):
    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    return Tokens("s" * 32)


def _api_token(tokens: Tokens, user, token_id: str, padding: int = 0) -> str:
    scopes = {f"storage.{user.public_id}.namespaces.{'n' * 60}{i:04d}": ["read"] for i in range(padding)}
    token = tokens.issue_api_token(user, token_id, scopes or {f"storage.{user.public_id}": ["read"]}, None)
    ApiToken.create(id=token_id, user=user, name="t", scopes="{}", token_sha256=sha256(token), created_at=now())
    return token


def test_cache_is_keyed_by_digest_and_bounded_in_bytes(tokens, monkeypatch):
    monkeypatch.setattr(identity, "VERIFIED_CACHE_BYTES", 64 * 1024)
    user = users.create_user("alice", "alice-pass-1", None, False)
    for i in range(40):  # ~8 KB tokens: 320 KB of token text in all
        token = _api_token(tokens, user, f"tok{i:04d}", padding=80)
        assert tokens.authenticate(token).token_id == f"tok{i:04d}"
        assert token not in tokens._verified and sha256(token) in tokens._verified
    assert tokens._verified_bytes <= 64 * 1024
    assert tokens._verified_bytes == sum(size for _, size in tokens._verified.values())
    assert 0 < len(tokens._verified) < 40


def test_revoked_tokens_leave_the_cache(tokens):
    user = users.create_user("bob", "bob-pass-1", None, False)
    token = _api_token(tokens, user, "tokdel")
    tokens.authenticate(token)
    row = ApiToken.get(ApiToken.id == "tokdel")
    row.delete_instance()
    tokens.forget(row.token_sha256)
    assert not tokens._verified and tokens._verified_bytes == 0
    with pytest.raises(Unauthenticated):
        tokens.authenticate(token)
    session = tokens.issue_session(user)
    principal = tokens.authenticate(session)
    assert sha256(session) in tokens._verified
    tokens.revoke_session(principal)
    assert sha256(session) not in tokens._verified
    with pytest.raises(Unauthenticated):
        tokens.authenticate(session)
