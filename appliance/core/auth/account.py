"""Account settings people look after themselves, and the admins' session and
password actions (docs/accounts.md). A mixin of AuthServicer: it shares the
servicer's token issuer, login throttle and hashing pool."""
from __future__ import annotations

import logging

from appliance.core import audit, live
from appliance.core import context as ctx
from appliance.core.auth import sessions, users
from appliance.core.auth.inflight import InFlight
from appliance.core.auth.passwords import HashPool, hash_password, verify_password
from appliance.core.auth.throttle import LoginThrottle
from appliance.core.db import User
from appliance.errors import Invalid, NotFound, Unauthenticated
from appliance.logsafe import clip
from appliance.v1 import auth_pb2, common_pb2

log = logging.getLogger("appliance.core.auth.account")

OK = common_pb2.StatusResponse(status="ok")


def _ended(user_ids: list[str], target: str) -> None:
    """Sessions of these users ended: recorded, and their open streams re-checked now."""
    for user_id in user_ids:
        audit.record("session.ended", target=target, user_id=user_id)
        live.credentials_changed(user_id)


def _audit_page(request, user_id: str) -> auth_pb2.ListAuditResponse:
    events, next_before = audit.page(
        user_id, request.event, request.since if request.HasField("since") else None,
        request.until if request.HasField("until") else None, request.limit,
        request.before if request.HasField("before") else None)
    return auth_pb2.ListAuditResponse(events=[auth_pb2.AuditEvent(**e) for e in events], next_before=next_before)


class AccountSettings:
    # Provided by AuthServicer.
    throttle: LoginThrottle
    hasher: HashPool
    in_flight: InFlight

    async def UpdateProfile(self, request, context):
        principal = ctx.session()
        name = users.validate_display_name(request.display_name)
        User.update(display_name=name).where(User.id == principal.user.id).execute()
        audit.record("profile.updated", target=principal.user_id)
        return auth_pb2.Profile(username=principal.user.username, display_name=name, user_id=principal.user_id)

    async def ChangePassword(self, request, context):
        principal = ctx.session()
        users.validate_password(request.new_password)
        user = User.get_by_id(principal.user.id)   # the hash as it is now, not as the call began
        await self._verify_current(user, request.current_password)
        new_hash = await self.hasher.run(hash_password, request.new_password)
        User.update(password_hash=new_hash).where(User.id == user.id).execute()
        audit.record("password.changed", target=user.public_id)
        _ended(sessions.end_sessions(user, keep=principal.jti), "other sessions: password changed")
        log.info("password of %s changed from %s; its other sessions ended", clip(user.username),
                 clip(ctx.client_address()))
        return OK

    async def _verify_current(self, user: User, password: str) -> None:
        """The current password, verified as a login is: one at a time per
        address, counted by the login throttle (a wrong one keeps its slot)."""
        address = ctx.client_address()
        keys = self.in_flight.keys(user.username, address)
        self.in_flight.acquire(keys)
        handed_over = False
        try:
            with self.throttle.reserve(user.username, address) as attempt:
                verifying = self.hasher.submit(verify_password, user.password_hash, password,
                                               on_done=lambda: self.in_flight.release(keys))
                handed_over = True
                try:
                    ok = await verifying
                except BaseException:
                    attempt.failed()
                    raise
                if not ok:
                    attempt.failed()
                    audit.record("password.changed", target=user.public_id, outcome=audit.FAILURE)
                    log.info("password change: %s gave a wrong current password from %s",
                             clip(user.username), clip(address))
                    raise Unauthenticated("current password is incorrect")
                attempt.succeeded()
        finally:
            if not handed_over:
                self.in_flight.release(keys)

    async def ListMySessions(self, request, context):
        principal = ctx.session()
        return auth_pb2.ListMySessionsResponse(sessions=[
            auth_pb2.MySession(**s) for s in sessions.own_sessions(principal.user, principal.jti)])

    async def EndMySession(self, request, context):
        principal = ctx.session()
        ended = sessions.end_sessions(principal.user, only=request.id) if request.id else []
        if not ended:
            raise NotFound("session not found")
        _ended(ended, request.id)
        return OK

    async def EndMyOtherSessions(self, request, context):
        principal = ctx.session()
        _ended(sessions.end_sessions(principal.user, keep=principal.jti), "other sessions")
        return OK

    async def EndSession(self, request, context):
        ended = sessions.end_sessions(only=request.id) if request.id else []
        if not ended:
            raise NotFound("session not found")
        _ended(ended, request.id)
        return OK

    async def ResetPassword(self, request, context):
        if not request.user_id:
            raise Invalid("user_id is required")
        users.validate_password(request.password)
        user = users.get_by_public_id(request.user_id)
        new_hash = await self.hasher.run(hash_password, request.password)
        User.update(password_hash=new_hash).where(User.id == user.id).execute()
        admin = ctx.session()
        # An admin resetting their own password keeps the session they did it with.
        audit.record("password.reset", target=user.public_id, user_id=user.public_id)
        _ended(sessions.end_sessions(user, keep=admin.jti if user.id == admin.user.id else None),
               "all sessions: password reset")
        log.info("password of %s reset by admin %s; its sessions ended", clip(user.username),
                 clip(admin.user.username))
        return OK

    async def ListMyAudit(self, request, context):
        return _audit_page(request, ctx.session().user_id)

    async def ListAudit(self, request, context):
        return _audit_page(request, request.user)
