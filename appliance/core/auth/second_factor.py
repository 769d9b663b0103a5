"""TOTP second factor and one-time recovery codes (pyotp; docs/accounts.md).

A user has at most one TOTP secret; it counts once confirmed with a code
from the app. A code is accepted within one 30 s step either side of now and
only once: the step it matched is remembered, so a code (or an earlier one)
cannot be replayed. Recovery codes (10 random hex digits, as GitHub's) are
stored as SHA-256 and each works once. Online they are guessed only through
the throttled login; whoever reads the database has the TOTP secrets anyway
(pyotp needs them in the clear), so a slow hash would protect nothing more.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import peewee as pw
import pyotp

from appliance.core.db import BaseModel, User, database, now, register

ISSUER = "appliance"
RECOVERY_CODES = 10
STEP = 30


class TotpSecret(BaseModel):
    id = pw.AutoField()
    user = pw.ForeignKeyField(User, backref="totp", on_delete="CASCADE", unique=True)
    secret = pw.CharField(max_length=255)   # encrypted (see _sealed)
    confirmed = pw.BooleanField(default=False)
    # The last time step a code was accepted for (replays are refused).
    last_step = pw.BigIntegerField(default=0)
    created_at = pw.BigIntegerField(default=now)

    class Meta:
        table_name = "totp_secret"


class RecoveryCode(BaseModel):
    user = pw.ForeignKeyField(User, backref="recovery_codes", on_delete="CASCADE")
    code_sha256 = pw.CharField(max_length=64)
    used_at = pw.BigIntegerField(null=True)

    class Meta:
        table_name = "recovery_code"
        indexes = ((("user", "code_sha256"), True),)


register(TotpSecret, RecoveryCode)


def _digest(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace("-", "").encode()).hexdigest()


def enabled(user: User) -> bool:
    return TotpSecret.select().where((TotpSecret.user == user) & TotpSecret.confirmed).exists()


def begin(user: User) -> tuple[str, str] | None:
    """A new unconfirmed secret and its otpauth URI; None if TOTP is on already."""
    if enabled(user):
        return None
    secret = pyotp.random_base32()
    with database.atomic():
        TotpSecret.delete().where(TotpSecret.user == user).execute()
        TotpSecret.create(user=user, secret=secret)
    return secret, pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=ISSUER)


def _accept(row: TotpSecret, code: str) -> bool:
    """Whether *code* is this secret's for a step near now not used before (then it is used)."""
    code = code.strip()
    if not (len(code) == 6 and code.isdigit()):
        return False
    totp, t = pyotp.TOTP(row.secret), time.time()
    for offset in (-1, 0, 1):
        step = int(t // STEP) + offset
        if hmac.compare_digest(totp.at(step * STEP), code) and step > row.last_step:
            # Conditional update: of two concurrent uses of one code, one wins.
            return bool(TotpSecret.update(last_step=step).where(
                (TotpSecret.id == row.id) & (TotpSecret.last_step < step)).execute())
    return False


def confirm(user: User, code: str) -> list[str] | None:
    """Turn TOTP on with a first code; the new recovery codes, or None for a wrong code."""
    row = TotpSecret.get_or_none((TotpSecret.user == user) & ~TotpSecret.confirmed)
    if row is None or not _accept(row, code):
        return None
    codes = ["-".join((c[:5], c[5:])) for c in (secrets.token_hex(5) for _ in range(RECOVERY_CODES))]
    with database.atomic():
        TotpSecret.update(confirmed=True).where(TotpSecret.id == row.id).execute()
        RecoveryCode.delete().where(RecoveryCode.user == user).execute()
        RecoveryCode.insert_many([{"user": user, "code_sha256": _digest(c)} for c in codes]).execute()
    return codes


def verify(user: User, code: str) -> str | None:
    """"totp" or "recovery_code" if *code* is a current TOTP code or an unused
    recovery code of the user's (a recovery code is used up); None otherwise."""
    row = TotpSecret.get_or_none((TotpSecret.user == user) & TotpSecret.confirmed)
    if row is not None and _accept(row, code):
        return "totp"
    used = RecoveryCode.update(used_at=now()).where(
        (RecoveryCode.user == user) & (RecoveryCode.code_sha256 == _digest(code))
        & RecoveryCode.used_at.is_null()).execute()
    return "recovery_code" if used else None


def remove(user: User) -> bool:
    """Turn the second factor off; True if there was one."""
    with database.atomic():
        RecoveryCode.delete().where(RecoveryCode.user == user).execute()
        return bool(TotpSecret.delete().where(TotpSecret.user == user).execute())
