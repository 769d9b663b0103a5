"""AuthService: translate proto <-> the identity and user domain, nothing else."""
from __future__ import annotations

import json
import logging

from google.protobuf import json_format, struct_pb2

from appliance import metrics
from appliance.core import context as ctx
from appliance.core import live
from appliance.core.auth import scopes as scope_rules
from appliance.core.auth import users
from appliance.core.auth.identity import Tokens, sha256
from appliance.core.auth.inflight import InFlight
from appliance.core.auth.passwords import HashPool, hash_password, verify_password, warm_up
from appliance.core.auth.throttle import LoginThrottle
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


def _token_message(row: ApiToken) -> auth_pb2.ApiToken:
    return auth_pb2.ApiToken(id=row.id, name=row.name, scopes=_struct(json.loads(row.scopes)),
                             expires_at=row.expires_at, last_used_at=row.last_used_at,
                             created_at=row.created_at)


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, tokens: Tokens, throttle: LoginThrottle, hasher: HashPool | None = None,
                 max_tokens_per_user: int = 50, max_token_scopes: int = scope_rules.MAX_SCOPES):
        self.tokens = tokens
        self.throttle = throttle
        self.hasher = hasher or HashPool()
        self.max_tokens_per_user = max_tokens_per_user
        self.max_token_scopes = max_token_scopes
        self.in_flight = InFlight()

    @classmethod
    def from_config(cls, tokens: Tokens, config) -> AuthServicer:
        throttle = LoginThrottle(config.login_max_failures, config.login_window_seconds,
                                 max_entries=config.login_throttle_max_entries,
                                 max_successes=config.login_max_successes_per_address)
        warm_up()   # the dummy hash of unknown users' logins, made before the first one
        return cls(tokens, throttle, HashPool(config.password_hash_workers, config.password_hash_queue),
                   config.max_tokens_per_user, config.max_token_scopes)

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
                    metrics.LOGINS.labels("failed").inc()
                    log.info("login: %s failed from %s (%s)", clip(request.username), clip(address),
                             "wrong password" if user else "unknown user")
                    raise Unauthenticated("invalid username or password")
                attempt.succeeded()
                metrics.LOGINS.labels("ok").inc()
        finally:
            if not handed_over:
                self.in_flight.release(keys)
        log.info("login: %s signed in from %s", clip(user.username), clip(address))
        return auth_pb2.LoginResponse(token=self.tokens.issue_session(user, address), **users.as_dict(user))

    async def GetSession(self, request, context):
        return _user_message(ctx.session().user)

    async def Logout(self, request, context):
        principal = ctx.optional_principal()
        if principal is not None:
            self.tokens.revoke_session(principal)
            live.credentials_changed(principal.user.public_id)  # its open streams end now
        return OK

    async def CreateToken(self, request, context):
        user = ctx.session().user
        name = request.name
        if not 1 <= len(name) <= 64:
            raise Invalid("name must be 1-64 characters")
        if request.expires_in not in EXPIRY:
            raise Invalid("expires_in must be one of 30d, 90d, 365d, never")
        scopes = scope_rules.validate(json_format.MessageToDict(request.scopes), user.public_id,
                                      self.max_token_scopes)
        # No await between this count and the insert: concurrent creates
        # cannot both pass it.
        if ApiToken.select().where(ApiToken.user == user).count() >= self.max_tokens_per_user:
            raise Conflict(f"at most {self.max_tokens_per_user} API tokens per user; delete one first")
        ttl = EXPIRY[request.expires_in]
        created = now()
        expires_at = created + ttl if ttl else None
        with database.atomic():
            token_id = new_public_id(12)
            token = self.tokens.issue_api_token(user, token_id, scopes, expires_at)
            ApiToken.create(id=token_id, user=user, name=name, scopes=json.dumps(scopes),
                            token_sha256=sha256(token), expires_at=expires_at, created_at=created)
        return auth_pb2.CreatedToken(id=token_id, name=name, scopes=_struct(scopes),
                                     expires_at=expires_at, created_at=created, token=token)

    async def ListTokens(self, request, context):
        user = ctx.session().user
        rows = ApiToken.select().where(ApiToken.user == user).order_by(ApiToken.created_at, ApiToken.id)
        return auth_pb2.ListTokensResponse(tokens=[_token_message(r) for r in rows])

    async def DeleteToken(self, request, context):
        user = ctx.session().user
        row = ApiToken.get_or_none((ApiToken.id == request.id) & (ApiToken.user == user))
        if row is None or not ApiToken.delete().where(ApiToken.id == row.id).execute():
            raise NotFound("token not found")
        self.tokens.forget(row.token_sha256)
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
        return _user_message(user)

    async def DeleteUser(self, request, context):
        user_id = request.user_id or request.id
        if not user_id:
            raise Invalid("user_id is required (path or ?id=)")
        await users.delete_user(users.get_by_public_id(user_id))
        return OK
