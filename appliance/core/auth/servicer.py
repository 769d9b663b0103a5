"""AuthService: translate proto <-> the identity and user domain, nothing else."""
from __future__ import annotations

import json
import logging

from google.protobuf import json_format, struct_pb2

from appliance import metrics
from appliance.core import audit, live
from appliance.core import context as ctx
from appliance.core.auth import scopes as scope_rules
from appliance.core.auth import second_factor, users, webauthn_keys
from appliance.core.auth.account import AccountSettings
from appliance.core.auth.identity import Tokens, sha256
from appliance.core.auth.inflight import InFlight
from appliance.core.auth.passwords import HashPool, hash_password, verify_password, warm_up
from appliance.core.auth.service_accounts import ServiceAccounts, token_messages
from appliance.core.auth.throttle import LoginThrottle
from appliance.core.auth.totp_settings import TotpSettings
from appliance.core.auth.webauthn_settings import WebAuthnSettings
from appliance.core.db import ApiToken, User, database, new_public_id, now
from appliance.errors import Conflict, Invalid, NotFound, Unauthenticated
from appliance.logsafe import clip
from appliance.v1 import auth_pb2, auth_pb2_grpc, common_pb2

log = logging.getLogger("appliance.core.auth.servicer")

EXPIRY = {"30d": 30 * 86400, "90d": 90 * 86400, "365d": 365 * 86400, "never": None, "": None}
OK = common_pb2.StatusResponse(status="ok")


def _user_message(user: User) -> auth_pb2.User:
    return auth_pb2.User(**users.as_dict(user))


def _struct(value: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


class AuthServicer(AccountSettings, ServiceAccounts, TotpSettings, WebAuthnSettings,
                   auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, tokens: Tokens, throttle: LoginThrottle, hasher: HashPool | None = None,
                 max_tokens_per_user: int = 50, max_token_scopes: int = scope_rules.MAX_SCOPES,
                 max_service_accounts_per_user: int = 20,
                 relying_party: webauthn_keys.RelyingParty | None = None):
        self.tokens = tokens
        self.relying_party = relying_party or webauthn_keys.RelyingParty("localhost", ("http://localhost",))
        self.throttle = throttle
        self.hasher = hasher or HashPool()
        self.max_tokens_per_user = max_tokens_per_user
        self.max_token_scopes = max_token_scopes
        self.max_service_accounts_per_user = max_service_accounts_per_user
        self.in_flight = InFlight()

    @classmethod
    def from_config(cls, tokens: Tokens, config) -> AuthServicer:
        throttle = LoginThrottle(config.login_max_failures, config.login_window_seconds,
                                 max_entries=config.login_throttle_max_entries,
                                 max_successes=config.login_max_successes_per_address)
        warm_up()   # the dummy hash of unknown users' logins, made before the first one
        return cls(tokens, throttle, HashPool(config.password_hash_workers, config.password_hash_queue),
                   config.max_tokens_per_user, config.max_token_scopes, config.max_service_accounts_per_user,
                   webauthn_keys.RelyingParty.from_config(config))

    def close(self) -> None:
        self.hasher.close()

    async def Login(self, request, context):
        # Before any work: a name that cannot exist is 400 and leaves no trace.
        users.validate_login_name(request.username)
        address = ctx.client_address()
        # One verification at a time per client (IPv6: per /64) and per
        # username, held until the hashing thread is done (429 otherwise).
        keys = self.in_flight.keys(request.username, address)
        self.in_flight.acquire(keys)
        handed_over = False
        try:
            # The attempt is counted before its password is verified (429 here
            # when the pair's or the address's slots are taken) ...
            with self.throttle.reserve(request.username, address) as attempt:
                user = User.get_or_none(User.username == request.username)
                # ... and given back if the pool is full (429: nothing verified).
                verifying = self.hasher.submit(verify_password, user.password_hash if user else None,
                                               request.password, on_done=lambda: self.in_flight.release(keys))
                handed_over = True
                try:
                    ok = await verifying
                except BaseException:
                    attempt.failed()  # the verification ran or still runs: it counts
                    raise
                if not ok or user is None:
                    attempt.failed()
                    audit.record("login", target=request.username, outcome=audit.FAILURE,
                                 user_id=user.public_id if user else "")
                    metrics.LOGINS.labels("failed").inc()
                    log.info("login: %s failed from %s (%s)", clip(request.username), clip(address),
                             "wrong password" if user else "unknown user")
                    raise Unauthenticated("invalid username or password")
                needs_code = second_factor.enabled(user) or webauthn_keys.enabled(user)
                if needs_code:
                    attempt.half_succeeded()
                else:
                    attempt.succeeded()
                metrics.LOGINS.labels("ok").inc()
        finally:
            if not handed_over:
                self.in_flight.release(keys)
        if needs_code:
            log.info("login: %s gave the right password from %s; second factor next", clip(user.username),
                     clip(address))
            return auth_pb2.LoginResponse(requires_2fa=True, challenge_token=self.tokens.issue_challenge(user),
                                          **users.as_dict(user))
        log.info("login: %s signed in from %s", clip(user.username), clip(address))
        token = self.tokens.issue_session(user, address, ctx.user_agent())
        audit.record("login", target=user.username, actor=user)
        return auth_pb2.LoginResponse(token=token, **users.as_dict(user))

    async def GetSession(self, request, context):
        return _user_message(ctx.session().user)

    async def Logout(self, request, context):
        principal = ctx.optional_principal()
        if principal is not None:
            self.tokens.revoke_session(principal)
            audit.record("logout", target=principal.jti or "")
            live.credentials_changed(principal.user.public_id)  # its open streams end now
        return OK

    async def CreateToken(self, request, context):
        user = ctx.session().user
        scopes = json_format.MessageToDict(request.scopes)
        return self.create_token(user, request.name, request.expires_in, scopes)

    def create_token(self, user: User, name: str, expires_in: str, scopes: dict,
                     service_account_id: str | None = None) -> auth_pb2.CreatedToken:
        """A new API token of *user*'s (of their service account's, with
        *service_account_id*: then *scopes* are the account's, checked already)."""
        if not 1 <= len(name) <= 64:
            raise Invalid("name must be 1-64 characters")
        if expires_in not in EXPIRY:
            raise Invalid("expires_in must be one of 30d, 90d, 365d, never")
        if service_account_id is None:
            scopes = scope_rules.validate(scopes, user.public_id, self.max_token_scopes)
        # No await between this count and the insert: concurrent creates
        # cannot both pass it.
        if ApiToken.select().where(ApiToken.user == user).count() >= self.max_tokens_per_user:
            raise Conflict(f"at most {self.max_tokens_per_user} API tokens per user; delete one first")
        ttl = EXPIRY[expires_in]
        created = now()
        expires_at = created + ttl if ttl else None
        with database.atomic():
            token_id = new_public_id(12)
            token = self.tokens.issue_api_token(user, token_id, scopes, expires_at, service_account_id)
            ApiToken.create(id=token_id, user=user, name=name, scopes=json.dumps(scopes),
                            token_sha256=sha256(token), expires_at=expires_at, created_at=created,
                            service_account_id=service_account_id)
        audit.record("token.created", target=token_id)
        return auth_pb2.CreatedToken(id=token_id, name=name, scopes=_struct(scopes), expires_at=expires_at,
                                     created_at=created, token=token, service_account_id=service_account_id)

    async def ListTokens(self, request, context):
        user = ctx.session().user
        rows = ApiToken.select().where(ApiToken.user == user).order_by(ApiToken.created_at, ApiToken.id)
        return auth_pb2.ListTokensResponse(tokens=token_messages(rows))

    async def DeleteToken(self, request, context):
        user = ctx.session().user
        row = ApiToken.get_or_none((ApiToken.id == request.id) & (ApiToken.user == user))
        if row is None or not ApiToken.delete().where(ApiToken.id == row.id).execute():
            raise NotFound("token not found")
        self.tokens.forget(row.token_sha256)
        audit.record("token.deleted", target=row.id)
        live.credentials_changed(user.public_id)  # streams opened with it end now
        return OK

    async def CheckToken(self, request, context):
        row = ApiToken.get_or_none(ApiToken.id == request.id)
        if row is None or (row.expires_at is not None and row.expires_at <= now()):
            raise NotFound("token not found")
        return OK

    async def ListSessions(self, request, context):
        return auth_pb2.ListSessionsResponse(sessions=[auth_pb2.Session(**s) for s in users.live_sessions()])

    async def ListUsers(self, request, context):
        return auth_pb2.ListUsersResponse(users=[_user_message(u) for u in User.select().order_by(User.id)])

    async def CreateUser(self, request, context):
        display = request.display_name if request.HasField("display_name") else None
        users.validate_password(request.password)
        users.validate_username(request.username)
        password_hash = await self.hasher.run(hash_password, request.password)
        user = users.create_user(request.username, request.password, display, request.is_admin,
                                 password_hash=password_hash)
        audit.record("user.created", target=user.public_id, user_id=user.public_id)
        return _user_message(user)

    async def UpdateUser(self, request, context):
        if not request.HasField("is_admin"):
            raise Invalid("is_admin (true or false) is required")
        user = users.get_by_public_id(request.user_id)
        changed = users.set_admin(user, request.is_admin, by=ctx.principal().user)
        audit.record("user.admin_granted" if request.is_admin else "user.admin_revoked",
                     target=user.public_id, user_id=user.public_id)
        if not request.is_admin:
            live.credentials_changed(user.public_id)   # their admin-only streams (/sse/logs) end now
        return _user_message(changed)

    async def DeleteUser(self, request, context):
        user_id = request.user_id or request.id
        if not user_id:
            raise Invalid("user_id is required (path or ?id=)")
        user = users.get_by_public_id(user_id)
        users.check_deletable(user, by=ctx.principal().user)
        await users.delete_user(user)
        audit.record("user.deleted", target=user_id, user_id=user_id)
        return OK
