"""The TOTP second factor's endpoints and a login's second step (docs/accounts.md).
A mixin of AuthServicer, sharing its tokens, throttle and AccountSettings'
password check."""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from appliance.core import audit
from appliance.core import context as ctx
from appliance.core.auth import second_factor, users, webauthn_keys
from appliance.core.auth.identity import Tokens
from appliance.core.auth.throttle import LoginThrottle
from appliance.core.db import User
from appliance.errors import Conflict, Invalid, NotFound, Unauthenticated
from appliance.v1 import auth_pb2, common_pb2

OK = common_pb2.StatusResponse(status="ok")


class TotpSettings:
    # Provided by AuthServicer (and AccountSettings).
    tokens: Tokens
    throttle: LoginThrottle
    _verify_current: Callable[[User, str], Awaitable[None]]

    async def LoginSecondFactor(self, request, context):
        address = ctx.client_address()
        user = self.tokens.spend_challenge(request.challenge_token)
        # Counted as a login's password: a guessed code costs a whole login each time.
        with self.throttle.reserve(user.username, address, second_factor=True) as attempt:
            how = second_factor.verify(user, request.code)
            if how is None:
                attempt.failed()
                audit.record("login", target=user.username, outcome=audit.FAILURE, user_id=user.public_id)
                raise Unauthenticated("invalid code; sign in again")
            attempt.succeeded()
        audit.record("login", target=f"{user.username} ({how})", actor=user)
        token = self.tokens.issue_session(user, address, ctx.user_agent())
        return auth_pb2.LoginResponse(token=token, **users.as_dict(user))

    async def GetTotp(self, request, context):
        since, left = second_factor.status(ctx.session().user)
        return auth_pb2.TotpStatus(enabled=bool(since), enabled_at=since, recovery_codes_left=left)

    async def BeginTotp(self, request, context):
        user = ctx.session().user
        begun = second_factor.begin(user)
        if begun is None:
            raise Conflict("two-factor authentication is on already; disable it first")
        secret, uri = begun
        return auth_pb2.TotpSecret(secret=secret, otpauth_uri=uri)

    async def EnableTotp(self, request, context):
        user = ctx.session().user
        codes = second_factor.confirm(user, request.code)
        if codes is None:
            raise Invalid("code is not valid for the secret from /api/settings/totp/begin")
        audit.record("2fa.enabled", target="totp")
        return auth_pb2.RecoveryCodes(recovery_codes=codes)

    async def DisableTotp(self, request, context):
        principal = ctx.session()
        user = User.get_by_id(principal.user.id)
        await self._verify_current(user, request.current_password)
        if not second_factor.remove(user):
            raise NotFound("two-factor authentication is not on")
        audit.record("2fa.disabled", target="totp")
        return OK

    async def RemoveSecondFactors(self, request, context):
        if not request.user_id:
            raise Invalid("user_id is required")
        user = users.get_by_public_id(request.user_id)
        had_totp = second_factor.remove(user)
        if not (webauthn_keys.remove_all(user) or had_totp):
            raise NotFound("the user has no second factor")
        audit.record("2fa.removed", target=user.public_id, user_id=user.public_id)
        return OK
