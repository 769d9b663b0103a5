"""TOTP and recovery codes (core/auth/second_factor.py) and a login's challenge
token (identity.Tokens): codes within one step of now, each once; recovery
codes once; a challenge is spent by its first use and is never a session."""
from __future__ import annotations

import time

import pyotp
import pytest

from appliance.core.auth import second_factor, users
from appliance.core.auth.identity import Tokens
from appliance.core.db import open_database
from appliance.errors import Unauthenticated


@pytest.fixture
def alice(tmp_path, monkeypatch):
    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    second_factor.configure("jwt-secret-" * 3)
    user = users.create_user("alice", "alice-pass-1", None, False)
    # Frozen mid-step: no test can straddle a step boundary.
    frozen = (int(time.time()) // 30) * 30 + 15.0
    monkeypatch.setattr(second_factor.time, "time", lambda: frozen)
    return user


def now() -> float:
    return second_factor.now()


def test_enabling_needs_a_right_code_and_gives_ten_recovery_codes(alice):
    secret, uri = second_factor.begin(alice)
    assert uri.startswith("otpauth://totp/appliance:alice?") and not second_factor.enabled(alice)
    totp = pyotp.TOTP(secret)
    assert second_factor.confirm(alice, "abc") is None
    assert second_factor.confirm(alice, totp.at(now() - 300)) is None   # too old
    codes = second_factor.confirm(alice, totp.at(now()))
    assert codes is not None and len(set(codes)) == 10 and second_factor.enabled(alice)
    assert second_factor.begin(alice) is None   # on already


def test_codes_work_once_within_a_step_of_now(alice):
    secret, _ = second_factor.begin(alice)
    totp = pyotp.TOTP(secret)
    second_factor.confirm(alice, totp.at(now() - 30))   # the previous step
    assert second_factor.verify(alice, totp.at(now() - 30)) is None   # replayed
    assert second_factor.verify(alice, totp.at(now() + 90)) is None   # too far ahead
    assert second_factor.verify(alice, totp.at(now())) == "totp"
    assert second_factor.verify(alice, totp.at(now())) is None   # once
    assert second_factor.verify(alice, totp.at(now() - 30)) is None   # older than the last one used
    assert second_factor.verify(alice, totp.at(now() + 30)) == "totp"


def test_recovery_codes_work_once_and_only_for_their_user(alice):
    bob = users.create_user("bob", "bob-pass-1", None, False)
    a_secret, _ = second_factor.begin(alice)
    second_factor.begin(bob)
    a_codes = second_factor.confirm(alice, pyotp.TOTP(a_secret).at(now()))
    assert a_codes is not None
    assert second_factor.verify(bob, a_codes[0]) is None
    assert second_factor.verify(alice, " " + a_codes[0].upper() + " ") == "recovery_code"
    assert second_factor.verify(alice, a_codes[0]) is None
    assert second_factor.remove(alice) and not second_factor.enabled(alice)
    assert second_factor.verify(alice, a_codes[1]) is None   # gone with the factor
    assert not second_factor.remove(alice)


def test_a_challenge_is_spent_once_and_is_no_session(alice, monkeypatch):
    monkeypatch.undo()   # real time: a JWT's iat must not lie in the future
    tokens = Tokens("s" * 32)
    challenge = tokens.issue_challenge(alice)
    with pytest.raises(Unauthenticated):
        tokens.authenticate(challenge)
    assert tokens.spend_challenge(challenge).username == "alice"
    with pytest.raises(Unauthenticated, match="already used"):
        tokens.spend_challenge(challenge)
    with pytest.raises(Unauthenticated, match="invalid challenge"):
        tokens.spend_challenge(tokens.issue_session(alice))


def test_secrets_are_stored_sealed_and_a_rotated_key_reads_none(alice):
    secret, _ = second_factor.begin(alice)
    stored = second_factor.TotpSecret.get(second_factor.TotpSecret.user == alice).secret
    assert secret not in stored and len(stored) <= 255
    codes = second_factor.confirm(alice, pyotp.TOTP(secret).at(now()))
    assert codes is not None
    second_factor.configure("another-jwt-secret" * 2)
    assert second_factor.verify(alice, pyotp.TOTP(secret).at(now() + 30)) is None   # unreadable: no code works
    assert second_factor.verify(alice, codes[0]) == "recovery_code"   # recovery codes still do
