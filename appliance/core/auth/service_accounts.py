"""Service accounts: automation's own identity (docs/accounts.md). A mixin of
AuthServicer, using its token issuing.

An account belongs to the user who made it and acts only on that user's
resources: its scopes are validated as a token's (owner = the creator). Its
tokens are API tokens of the creator's with ``service_account_id`` set; the
core reads the account's scopes on every use of such a token
(identity.Tokens._api_token), so narrowing the account narrows its live
tokens on their next request, and deleting it (its tokens with it) stops
them at once - open streams included (``live.credentials_changed``).
"""
from __future__ import annotations

import json
from collections.abc import Callable

import peewee as pw
from google.protobuf import json_format, struct_pb2

from appliance.core import audit, live
from appliance.core import context as ctx
from appliance.core.auth import scopes as scope_rules
from appliance.core.auth.identity import Tokens
from appliance.core.db import ApiToken, ServiceAccount, User, database, new_public_id, now
from appliance.errors import Conflict, Invalid, NotFound
from appliance.v1 import auth_pb2, common_pb2

OK = common_pb2.StatusResponse(status="ok")
ID_PREFIX = "sa_"


def struct(value: dict) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


def token_messages(rows) -> list[auth_pb2.ApiToken]:
    """Tokens as listed; a service account's with the account's scopes as they are now."""
    rows = list(rows)
    account_ids = {r.service_account_id for r in rows if r.service_account_id is not None}
    accounts = {a.id: a.scopes for a in ServiceAccount.select().where(ServiceAccount.id.in_(account_ids))} \
        if account_ids else {}
    return [auth_pb2.ApiToken(id=r.id, name=r.name,
                              scopes=struct(json.loads(accounts.get(r.service_account_id, r.scopes))),
                              expires_at=r.expires_at, last_used_at=r.last_used_at, created_at=r.created_at,
                              service_account_id=r.service_account_id) for r in rows]


def _message(account: ServiceAccount, token_count: int) -> auth_pb2.ServiceAccount:
    return auth_pb2.ServiceAccount(id=account.id, name=account.name, scopes=struct(json.loads(account.scopes)),
                                   created_at=account.created_at, token_count=token_count)


def _count(account: ServiceAccount) -> int:
    return ApiToken.select().where(ApiToken.service_account_id == account.id).count()


def _name(name: str) -> str:
    if not 1 <= len(name) <= 64:
        raise Invalid("name must be 1-64 characters")
    return name


class ServiceAccounts:
    # Provided by AuthServicer.
    tokens: Tokens
    max_token_scopes: int
    max_service_accounts_per_user: int
    create_token: Callable[..., auth_pb2.CreatedToken]

    def _scopes(self, user: User, request) -> dict:
        return scope_rules.validate(json_format.MessageToDict(request.scopes), user.public_id,
                                    self.max_token_scopes)

    @staticmethod
    def _owned(user: User, account_id: str) -> ServiceAccount:
        account = ServiceAccount.get_or_none((ServiceAccount.id == account_id) & (ServiceAccount.owner == user))
        if account is None:
            raise NotFound("service account not found")
        return account

    async def CreateServiceAccount(self, request, context):
        user = ctx.session().user
        name = _name(request.name)
        scopes = self._scopes(user, request)
        limit = self.max_service_accounts_per_user
        try:
            with database.atomic():
                if ServiceAccount.select().where(ServiceAccount.owner == user).count() >= limit:
                    raise Conflict(f"at most {limit} service accounts per user; delete one first")
                account = ServiceAccount.create(id=ID_PREFIX + new_public_id(12), owner=user, name=name,
                                                scopes=json.dumps(scopes), created_at=now())
        except pw.IntegrityError:
            raise Conflict(f"you have a service account named {name!r} already") from None
        audit.record("service_account.created", target=account.id)
        return _message(account, 0)

    async def ListServiceAccounts(self, request, context):
        user = ctx.session().user
        counts = dict(ApiToken.select(ApiToken.service_account_id, pw.fn.COUNT(ApiToken.id))
                      .where((ApiToken.user == user) & ApiToken.service_account_id.is_null(False))
                      .group_by(ApiToken.service_account_id).tuples())
        rows = ServiceAccount.select().where(ServiceAccount.owner == user).order_by(ServiceAccount.created_at,
                                                                                    ServiceAccount.id)
        return auth_pb2.ListServiceAccountsResponse(service_accounts=[_message(a, counts.get(a.id, 0)) for a in rows])

    async def GetServiceAccount(self, request, context):
        account = self._owned(ctx.session().user, request.id)
        return _message(account, _count(account))

    async def SetServiceAccountScopes(self, request, context):
        user = ctx.session().user
        account = self._owned(user, request.id)
        scopes = self._scopes(user, request)
        ServiceAccount.update(scopes=json.dumps(scopes)).where(ServiceAccount.id == account.id).execute()
        account.scopes = json.dumps(scopes)
        audit.record("service_account.scopes_changed", target=account.id)
        live.credentials_changed(user.public_id)   # streams of its tokens that lost a scope end now (guard.py)
        return _message(account, _count(account))

    async def DeleteServiceAccount(self, request, context):
        user = ctx.session().user
        account = self._owned(user, request.id)
        with database.atomic():
            digests = [t.token_sha256 for t in ApiToken.select(ApiToken.token_sha256)
                       .where(ApiToken.service_account_id == account.id)]
            ApiToken.delete().where(ApiToken.service_account_id == account.id).execute()
            ServiceAccount.delete().where(ServiceAccount.id == account.id).execute()
        for digest in digests:
            self.tokens.forget(digest)
        audit.record("service_account.deleted", target=account.id)
        live.credentials_changed(user.public_id)   # streams opened with its tokens end now
        return OK

    async def CreateServiceAccountToken(self, request, context):
        user = ctx.session().user
        account = self._owned(user, request.id)
        return self.create_token(user, request.name, request.expires_in, json.loads(account.scopes), account.id)

    async def ListServiceAccountTokens(self, request, context):
        account = self._owned(ctx.session().user, request.id)
        rows = ApiToken.select().where(ApiToken.service_account_id == account.id).order_by(
            ApiToken.created_at, ApiToken.id)
        return auth_pb2.ListTokensResponse(tokens=token_messages(rows))
