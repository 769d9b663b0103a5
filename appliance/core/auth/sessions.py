"""A user's own sessions: listing them and ending them (docs/accounts.md).

A session is its JWT; ending one writes its jti to RevokedSession (checked on
every call, identity.py) and removes its login_session row, in one
transaction. The caller then re-checks the user's open streams
(``live.credentials_changed``) so a WebSocket or SSE stream opened with an
ended session closes at once too.
"""
from __future__ import annotations

from peewee import chunked

from appliance.core.db import LoginSession, RevokedSession, User, database, now


def own_sessions(user: User, current_jti: str | None) -> list[dict]:
    """The user's live sessions, newest first; the caller's marked ``is_current``."""
    revoked = RevokedSession.select(RevokedSession.jti)
    rows = (LoginSession.select()
            .where((LoginSession.user == user) & (LoginSession.expires_at > now())
                   & LoginSession.id.not_in(revoked))
            .order_by(LoginSession.created_at.desc(), LoginSession.id))
    return [{"id": r.id, "ip_address": r.ip_address, "created_at": r.created_at,
             "is_current": r.id == current_jti, "user_agent": r.user_agent,
             "last_seen_at": r.last_seen_at} for r in rows]


def end_sessions(user: User | None = None, *, only: str | None = None, keep: str | None = None) -> list[str]:
    """End live sessions: of *user* (all, or only the one with id *only*, or
    all but *keep*), or with *user* None the one session *only* of anyone.
    Returns the public ids of the users whose sessions ended (for the stream
    re-check); empty when nothing matched."""
    where = LoginSession.expires_at > now()
    if user is not None:
        where &= LoginSession.user == user
    if only is not None:
        where &= LoginSession.id == only
    if keep is not None:
        where &= LoginSession.id != keep
    with database.atomic():
        rows = list(LoginSession.select(LoginSession.id, LoginSession.expires_at, User.public_id)
                    .join(User).where(where))
        if not rows:
            return []
        for batch in chunked(rows, 200):   # SQLite's bound on variables per statement
            RevokedSession.insert_many([{"jti": r.id, "expires_at": r.expires_at} for r in batch]) \
                .on_conflict_ignore().execute()
            LoginSession.delete().where(LoginSession.id.in_([r.id for r in batch])).execute()
    return sorted({r.user.public_id for r in rows})
