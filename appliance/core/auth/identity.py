"""Who is calling: session JWTs, API tokens (``ecloud_<jwt>``) and the Principal.

Tokens are signed with one pinned algorithm (HS256 by default); ``alg: none``
and every other algorithm are rejected by pyjwt because only the configured
one is allowed. Revocation is checked against the database on every request,
so a deleted API token or a logged-out session fails at once.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass

import jwt
import peewee as pw

from appliance.core.db import ApiToken, LoginSession, Prepared, RevokedSession, ServiceAccount, User, database, now
from appliance.errors import Unauthenticated

API_TOKEN_PREFIX = "ecloud_"
# API token last_used_at is written at most this often per token, so a busy
# token does not turn every read into a database write.
LAST_USED_RESOLUTION = 60
# Verified claims are memoised (keyed by the token's sha256, not the token):
# at most this many entries and this many bytes of token text; revoked
# tokens are dropped at once.
VERIFIED_CACHE_SIZE = 4096
VERIFIED_CACHE_BYTES = 4 << 20
# A session's last_seen_at (the admins' session list) is written at most this
# often: the sessions written lately are remembered (at most SEEN_CACHE_SIZE),
# so a request of a busy session costs a dict lookup, not a database write.
SESSION_SEEN_RESOLUTION = 60
SEEN_CACHE_SIZE = 8192
# A login's second step must come within this many seconds of its first.
CHALLENGE_TTL = 300
CHALLENGE = "2fa_challenge"
# What a one-shot token is called in errors (other kinds: a WebAuthn ceremony's state).
_ONESHOT_NAMES = {CHALLENGE: "challenge token"}


@dataclass(frozen=True)
class Principal:
    user: User
    kind: str  # "session" | "api_token"
    # None for sessions (every permission over their own resources).
    scopes: dict | None = None
    token_id: str | None = None
    jti: str | None = None
    expires_at: int | None = None
    # sha256 of the bearer token: its key in the verified-claims cache.
    token_sha256: str | None = None

    @property
    def user_id(self) -> str:
        return self.user.public_id

    @property
    def is_session(self) -> bool:
        return self.kind == "session"

    @property
    def is_admin(self) -> bool:
        return self.is_session and self.user.is_admin


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _password_mark(user: User) -> str:
    """Which password a one-shot token was issued under (a digest of the hash, not the hash)."""
    return sha256(user.password_hash or "")[:16]


class Tokens:
    def __init__(self, secret: str, algorithm: str = "HS256", session_ttl: int = 86400):
        self.secret = secret
        self.algorithm = algorithm
        self.session_ttl = session_ttl
        # The hot path of every request: compiled once (needs an open database).
        self._revoked = Prepared(RevokedSession, RevokedSession.jti)
        self._user_by_public_id = Prepared(User, User.public_id)
        self._user_by_id = Prepared(User, User.id)
        self._token_by_id = Prepared(ApiToken, ApiToken.id)
        self._account_by_id = Prepared(ServiceAccount, ServiceAccount.id)
        # sha256(bearer) -> (claims, token bytes), oldest first.
        self._verified: dict[str, tuple[dict, int]] = {}
        self._verified_bytes = 0
        # jti -> when this process last wrote the session's last_seen_at.
        self._seen: dict[str, int] = {}
        self._touch_sql, _ = LoginSession.update(last_seen_at=0).where(LoginSession.id == "").sql()

    # -- sessions -----------------------------------------------------------
    def issue_session(self, user: User, address: str = "", user_agent: str = "") -> str:
        """A session JWT for *user*, recorded (with the client *address* and
        *user_agent*) for the session lists; expired records are pruned here."""
        issued = int(time.time())
        claims = {
            "username": user.username,
            "display_name": user.display_name,
            "user_id": user.public_id,
            "sub": user.public_id,
            "iat": issued,
            "exp": issued + self.session_ttl,
            "jti": secrets.token_hex(16),
        }
        LoginSession.delete().where(LoginSession.expires_at <= issued).execute()
        LoginSession.create(id=claims["jti"], user=user, ip_address=address[:64],
                            user_agent=user_agent[:256], created_at=issued,
                            last_seen_at=issued, expires_at=claims["exp"])
        return jwt.encode(claims, self.secret, algorithm=self.algorithm)

    def issue_api_token(self, user: User, token_id: str, scopes: dict, expires_at: int | None,
                        service_account_id: str | None = None) -> str:
        claims = {
            "user_id": user.public_id,
            "token_id": token_id,
            "type": "api_token",
            "scopes": scopes,
            "iat": int(time.time()),
        }
        if service_account_id is not None:
            # Its scopes are the account's at each use; the claim says where to look.
            claims["service_account_id"] = service_account_id
            del claims["scopes"]
        if expires_at is not None:
            claims["exp"] = expires_at
        return API_TOKEN_PREFIX + jwt.encode(claims, self.secret, algorithm=self.algorithm)

    def _decode(self, token: str, digest: str) -> dict:
        """Verified claims of *token* (*digest*: the sha256 of the bearer string).
        A token string that verified once verifies again (same secret, same
        bytes), so results are memoised; expiry is re-checked on every use and
        revocation is never cached."""
        cached = self._verified.get(digest)
        if cached is not None:
            claims = cached[0]
            if "exp" in claims and claims["exp"] <= time.time():
                raise Unauthenticated("token expired")
            return claims
        claims = self._verify(token)
        size = len(token)
        while self._verified and (len(self._verified) >= VERIFIED_CACHE_SIZE
                                  or self._verified_bytes + size > VERIFIED_CACHE_BYTES):
            self._verified_bytes -= self._verified.pop(next(iter(self._verified)))[1]
        self._verified[digest] = (claims, size)
        self._verified_bytes += size
        return claims

    def forget(self, token_sha256: str | None) -> None:
        """Drop a revoked token's memoised claims."""
        cached = self._verified.pop(token_sha256, None) if token_sha256 else None
        if cached is not None:
            self._verified_bytes -= cached[1]

    def _verify(self, token: str) -> dict:
        try:
            return jwt.decode(
                token, self.secret, algorithms=[self.algorithm],
                options={"require": ["iat"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("invalid token") from None

    # -- verification -------------------------------------------------------
    def authenticate(self, bearer: str) -> Principal:
        """Principal for a bearer token, or Unauthenticated."""
        if not bearer:
            raise Unauthenticated("missing bearer token")
        if bearer.startswith(API_TOKEN_PREFIX):
            return self._api_token(bearer)
        return self._session(bearer)

    def _session(self, token: str) -> Principal:
        digest = sha256(token)
        claims = self._decode(token, digest)
        # Only a session's claims have no "type" (an API token's or a login challenge's do).
        if "type" in claims or "jti" not in claims or "exp" not in claims:
            raise Unauthenticated("invalid token")
        if self._revoked.first(str(claims["jti"])) is not None:
            raise Unauthenticated("session has been logged out")
        user = self._user_by_public_id.first(str(claims.get("user_id")))
        if user is None:
            raise Unauthenticated("user no longer exists")
        self._touch(str(claims["jti"]), user, claims)
        return Principal(user=user, kind="session", jti=str(claims["jti"]), expires_at=int(claims["exp"]),
                         token_sha256=digest)

    def _api_token(self, token: str) -> Principal:
        digest = sha256(token)
        claims = self._decode(token[len(API_TOKEN_PREFIX):], digest)
        if claims.get("type") != "api_token":
            raise Unauthenticated("invalid token")
        row = self._token_by_id.first(str(claims.get("token_id")))
        # The hash comparison makes a token that was re-signed with other
        # claims (or a deleted one) useless even if the secret leaked later.
        if row is None or not secrets.compare_digest(row.token_sha256, digest):
            raise Unauthenticated("token has been revoked")
        t = now()
        if row.expires_at is not None and row.expires_at <= t:
            raise Unauthenticated("token expired")
        if row.last_used_at is None or t - row.last_used_at >= LAST_USED_RESOLUTION:
            ApiToken.update(last_used_at=t).where(ApiToken.id == row.id).execute()
        scopes = row.scopes
        if row.service_account_id is not None:
            # The account's scopes as they are now: narrowing it narrows its tokens at once.
            account = self._account_by_id.first(row.service_account_id)
            if account is None:
                raise Unauthenticated("token has been revoked")
            scopes = account.scopes
        user = self._user_by_id.first(row.user_id)
        if user is None:
            raise Unauthenticated("token has been revoked")
        return Principal(user=user, kind="api_token", scopes=json.loads(scopes),
                         token_id=row.id, expires_at=row.expires_at, token_sha256=digest)

    def _touch(self, jti: str, user: User, claims: dict) -> None:
        """Record that the session was used (at most once a SESSION_SEEN_RESOLUTION).
        A session without a row (issued before the table existed) gets one,
        without its client address."""
        t = int(time.time())
        if t - self._seen.get(jti, 0) < SESSION_SEEN_RESOLUTION:
            return
        if not LoginSession._meta.database.execute_sql(self._touch_sql, (t, jti)).rowcount:
            LoginSession.insert(id=jti, user=user, created_at=int(claims["iat"]), last_seen_at=t,
                                expires_at=int(claims["exp"])).on_conflict_ignore().execute()
        self._seen_now(jti, t)

    def _seen_now(self, jti: str, t: int) -> None:
        self._seen.pop(jti, None)
        while len(self._seen) >= SEEN_CACHE_SIZE:
            self._seen.pop(next(iter(self._seen)))
        self._seen[jti] = t

    # -- a login's second step and other one-shot tokens --------------------------
    def issue_oneshot(self, kind: str, user: User, ttl: int = CHALLENGE_TTL, **extra) -> str:
        """A signed token of type *kind* for *user*, valid *ttl* seconds, to be
        spent once: a login challenge, a WebAuthn ceremony's state. Any token
        with a "type" claim is refused as a session."""
        issued = int(time.time())
        claims = {**extra, "type": kind, "user_id": user.public_id, "iat": issued, "exp": issued + ttl,
                  "jti": secrets.token_hex(16), "pw": _password_mark(user)}
        return jwt.encode(claims, self.secret, algorithm=self.algorithm)

    def issue_challenge(self, user: User) -> str:
        """A token proving the password was right, for the second factor's one call."""
        return self.issue_oneshot(CHALLENGE, user)

    def oneshot(self, token: str, kind: str) -> tuple[User, dict]:
        """The user and claims of a valid, unspent token of type *kind* (not spent here)."""
        claims = self._verify(token)
        if claims.get("type") != kind or "exp" not in claims or "jti" not in claims:
            raise Unauthenticated(f"invalid {_ONESHOT_NAMES.get(kind, 'state')}")
        if self._revoked.first(str(claims["jti"])) is not None:
            raise Unauthenticated(f"{_ONESHOT_NAMES.get(kind, 'state')} already used")
        user = self._user_by_public_id.first(str(claims.get("user_id")))
        if user is None:
            raise Unauthenticated("user no longer exists")
        # A password change or reset ends the half-made logins of the old password too.
        if not secrets.compare_digest(str(claims.get("pw", "")), _password_mark(user)):
            raise Unauthenticated("the password has changed since; sign in again")
        return user, claims

    def spend(self, claims: dict, kind: str) -> None:
        """Mark a one-shot token used; Unauthenticated if it was already (the
        primary key makes "spent once" hold across cores of one database too)."""
        try:
            with database.atomic():
                RevokedSession.insert(jti=str(claims["jti"]), expires_at=int(claims["exp"])).execute()
        except pw.IntegrityError:
            raise Unauthenticated(f"{_ONESHOT_NAMES.get(kind, 'state')} already used") from None

    def spend_challenge(self, token: str) -> User:
        """The user of a valid, unused challenge token; the token is spent
        (whatever the second factor's outcome: a wrong code means logging in again)."""
        user, claims = self.oneshot(token, CHALLENGE)
        self.spend(claims, CHALLENGE)
        return user

    def revoke_session(self, principal: Principal) -> None:
        if principal.is_session:
            self.forget(principal.token_sha256)
        if principal.is_session and principal.jti:
            RevokedSession.insert(jti=principal.jti, expires_at=principal.expires_at or now()) \
                .on_conflict_ignore().execute()
            LoginSession.delete().where(LoginSession.id == principal.jti).execute()
            self._seen.pop(principal.jti, None)
        RevokedSession.delete().where(RevokedSession.expires_at < now()).execute()
