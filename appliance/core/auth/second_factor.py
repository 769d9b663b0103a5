"""TOTP second factor and one-time recovery codes (pyotp; docs/accounts.md).

A user has at most one TOTP secret; it counts once confirmed with a code
from the app. A code is accepted within one 30 s step either side of now and
only once: the step it matched is remembered, so a code (or an earlier one)
cannot be replayed. Recovery codes (10 random hex digits, as GitHub's) are
stored as SHA-256 and each works once. Online they are guessed only through
the throttled login; a slow hash would add little.

TOTP secrets are stored encrypted (Fernet: AES-128-CBC + HMAC-SHA256) with a
key derived (HKDF) from the JWT signing secret - a secret every core of a
cluster has already, kept in the data dir or the configuration, never in the
database - so a copy of the database alone (a backup, a read-only leak) does
not give the codes away. Rotating the JWT secret makes the stored TOTP
secrets unreadable: those users' codes fail until an admin removes their
second factor (docs/accounts.md).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

import peewee as pw
import pyotp
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.core.db import BaseModel, User, database, now, register

ISSUER = "appliance"
RECOVERY_CODES = 10
STEP = 30


class TotpSecret(BaseModel):
    id = pw.AutoField()
    user = pw.ForeignKeyField(User, backref="totp", on_delete="CASCADE", unique=True)
    secret = pw.CharField(max_length=255)   # sealed (_seal)
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

_sealer: Fernet | None = None


def configure(jwt_secret: str) -> None:
    """Derive the key TOTP secrets are stored under (called by the core at start)."""
    global _sealer
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"appliance: TOTP secrets at rest").derive(jwt_secret.encode())
    _sealer = Fernet(base64.urlsafe_b64encode(key))


def _seal(secret: str) -> str:
    if _sealer is None:
        raise RuntimeError("second_factor.configure() was not called")
    return _sealer.encrypt(secret.encode()).decode()


def _unseal(stored: str) -> str | None:
    """The TOTP secret, or None if it was sealed under another key (a rotated JWT secret)."""
    if _sealer is None:
        raise RuntimeError("second_factor.configure() was not called")
    try:
        return _sealer.decrypt(stored.encode()).decode()
    except InvalidToken:
        return None


def _digest(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace("-", "").encode()).hexdigest()


def enabled(user: User) -> bool:
    return TotpSecret.select().where((TotpSecret.user == user) & TotpSecret.confirmed).exists()


def status(user: User) -> tuple[int, int]:
    """(when TOTP was turned on, 0 if it is off; recovery codes not used yet)."""
    row = TotpSecret.get_or_none((TotpSecret.user == user) & TotpSecret.confirmed)
    if row is None:
        return 0, 0
    left = RecoveryCode.select().where((RecoveryCode.user == user) & RecoveryCode.used_at.is_null()).count()
    return row.created_at, left


def begin(user: User) -> tuple[str, str] | None:
    """A new unconfirmed secret and its otpauth URI; None if TOTP is on already."""
    if enabled(user):
        return None
    secret = pyotp.random_base32()
    with database.atomic():
        TotpSecret.delete().where(TotpSecret.user == user).execute()
        TotpSecret.create(user=user, secret=_seal(secret))
    return secret, pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=ISSUER)


def _accept(row: TotpSecret, code: str) -> bool:
    """Whether *code* is this secret's for a step near now not used before (then it is used)."""
    code = code.strip()
    secret = _unseal(row.secret)
    if secret is None or not (len(code) == 6 and code.isdigit()):
        return False
    totp, t = pyotp.TOTP(secret), time.time()
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
        TotpSecret.update(confirmed=True, created_at=now()).where(TotpSecret.id == row.id).execute()
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
