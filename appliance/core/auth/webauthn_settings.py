"""Security keys' endpoints and a login's second step with one (docs/accounts.md).
A mixin of AuthServicer, sharing its tokens and throttle.

A ceremony's state is a one-shot token (identity.Tokens.issue_oneshot) that
carries the WebAuthn challenge: nothing is kept between begin and finish,
any core of a cluster can finish what another began, and a state is spent by
its finish whatever the outcome, so an assertion cannot be replayed against it.
"""
from __future__ import annotations

import time

from google.protobuf import json_format, struct_pb2

from appliance.core import audit
from appliance.core import context as ctx
from appliance.core.auth import users
from appliance.core.auth import webauthn_keys as keys
from appliance.core.auth.identity import CHALLENGE, Tokens
from appliance.core.auth.throttle import LoginThrottle
from appliance.core.db import User
from appliance.core.guard import bearer_from
from appliance.errors import Invalid, NotFound, PermissionDenied, Unauthenticated
from appliance.v1 import auth_pb2, common_pb2

OK = common_pb2.StatusResponse(status="ok")
REGISTER = "webauthn_register"
LOGIN = "webauthn_login"


def _ceremony(options: dict, state: str) -> auth_pb2.WebAuthnCeremony:
    message = auth_pb2.WebAuthnCeremony(state=state)
    message.options.update(options)
    return message


def _credential(value: struct_pb2.Struct) -> dict:
    return json_format.MessageToDict(value)


def _key_message(key: keys.WebAuthnCredential) -> auth_pb2.SecurityKey:
    message = auth_pb2.SecurityKey(id=key.id, name=key.name, authenticator_type=key.authenticator_type,
                                   created_at=key.created_at)
    if key.last_used_at is not None:
        message.last_used_at = key.last_used_at
    return message


def _own_key(user: User, key_id: str) -> keys.WebAuthnCredential:
    key = keys.WebAuthnCredential.get_or_none((keys.WebAuthnCredential.id == key_id)
                                              & (keys.WebAuthnCredential.user == user))
    if key is None:
        raise NotFound("no such security key")
    return key


class WebAuthnSettings:
    # Provided by AuthServicer.
    tokens: Tokens
    throttle: LoginThrottle
    relying_party: keys.RelyingParty

    async def AddKeyBegin(self, request, context):
        user = ctx.session().user
        options, challenge = keys.registration_options(self.relying_party, user)
        return _ceremony(options, self.tokens.issue_oneshot(REGISTER, user, challenge=challenge))

    async def AddKeyFinish(self, request, context):
        user = ctx.session().user
        owner, claims = self.tokens.oneshot(request.state, REGISTER)
        if owner.id != user.id:
            raise PermissionDenied("this registration was begun by another user")
        self.tokens.spend(claims, REGISTER)
        key = keys.add(self.relying_party, user, _credential(request.credential), str(claims.get("challenge")),
                       request.name)
        audit.record("2fa.key_added", target=f"{key.id} ({key.name})")
        return OK

    async def ListKeys(self, request, context):
        user = ctx.session().user
        return auth_pb2.ListKeysResponse(keys=[_key_message(k) for k in keys.keys_of(user)])

    async def DeleteKey(self, request, context):
        user = ctx.session().user
        key = _own_key(user, request.id)
        key.delete_instance()
        audit.record("2fa.key_removed", target=f"{key.id} ({key.name})")
        return OK

    async def RenameKey(self, request, context):
        user = ctx.session().user
        name = request.name.strip()
        if not 1 <= len(name) <= 64:
            raise Invalid("name must be 1-64 characters")
        key = _own_key(user, request.id)
        keys.WebAuthnCredential.update(name=name).where(keys.WebAuthnCredential.id == key.id).execute()
        audit.record("2fa.key_renamed", target=f"{key.id} ({name})")
        return OK

    # -- a login's second step ----------------------------------------------------
    async def WebAuthnLoginBegin(self, request, context):
        bearer = bearer_from(context.invocation_metadata() or ())
        if not bearer:
            raise Unauthenticated("missing challenge token (Authorization: Bearer <challenge_token>)")
        user, challenge_claims = self.tokens.oneshot(bearer, CHALLENGE)
        if not keys.enabled(user):
            raise NotFound("the user has no security key; use POST /api/login/totp")
        options, challenge = keys.authentication_options(self.relying_party, user)
        # The state names the challenge token: finishing spends both. It expires with it, or a
        # begin at the challenge's last second would stretch the second step to twice its time.
        ttl = max(1, int(challenge_claims["exp"]) - int(time.time()))
        state = self.tokens.issue_oneshot(LOGIN, user, ttl, challenge=challenge, login_jti=challenge_claims["jti"],
                                          login_exp=challenge_claims["exp"])
        return _ceremony(options, state)

    async def WebAuthnLoginFinish(self, request, context):
        address = ctx.client_address()
        user, claims = self.tokens.oneshot(request.state, LOGIN)
        self.tokens.spend(claims, LOGIN)
        # The challenge token goes too (a login is finished once, by a key or a code).
        self.tokens.spend({"jti": claims.get("login_jti"), "exp": claims.get("login_exp")}, CHALLENGE)
        with self.throttle.reserve(user.username, address, second_factor=True) as attempt:
            try:
                key = keys.verify_assertion(self.relying_party, user, _credential(request.credential),
                                            str(claims.get("challenge")))
            except Unauthenticated:
                attempt.failed()
                audit.record("login", target=f"{user.username} (security_key)", outcome=audit.FAILURE,
                             user_id=user.public_id)
                raise
            attempt.succeeded()
        audit.record("2fa.key_used", target=f"{key.id} ({key.name})", actor=user)
        audit.record("login", target=f"{user.username} (security_key)", actor=user)
        token = self.tokens.issue_session(user, address, ctx.user_agent())
        return auth_pb2.LoginResponse(token=token, **users.as_dict(user))
