"""User accounts: the domain functions behind the admin API and the CLI."""
from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import peewee as pw

from appliance.core.auth.passwords import MAX_PASSWORD_BYTES, hash_password
from appliance.core.db import LoginSession, RevokedSession, User, database, new_public_id, now
from appliance.errors import Conflict, Invalid, NotFound

MAX_USERNAME_CHARS = 64
USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,%d}" % MAX_USERNAME_CHARS)  # noqa: UP031 - an f-string doubles the braces

# Called with the User before its row is deleted, so services can release
# what they hold outside the database (guests, volumes, files on disk).
DeleteHook = Callable[[User], Awaitable[None]]
delete_hooks: list[DeleteHook] = []
# Admin changes on every core of one PostgreSQL one at a time, so two admins
# demoting each other cannot both succeed (a transaction-level advisory lock).
_ADMINS_LOCK = 0x61707041


def validate_username(username: str) -> str:
    if not USERNAME.fullmatch(username or ""):
        raise Invalid("username must be 1-64 characters of letters, digits, '.', '_', '-', '@'")
    return username


def validate_login_name(username: str) -> str:
    """Login names: anything that could not be a username is refused before any
    work (no lookup, no throttle entry, no argon2); the same rule as creation."""
    if len(username) > MAX_USERNAME_CHARS:
        raise Invalid(f"username must be at most {MAX_USERNAME_CHARS} characters")
    return validate_username(username)


def validate_password(password: str) -> str:
    if not password:
        raise Invalid("password must not be empty")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise Invalid(f"password must be at most {MAX_PASSWORD_BYTES} bytes")
    return password


def validate_display_name(name: str) -> str:
    if not 1 <= len(name) <= 128:
        raise Invalid("display_name must be 1-128 characters")
    return name


def create_user(username: str, password: str, display_name: str | None = None,
                is_admin: bool = False, password_hash: str | None = None) -> User:
    validate_username(username)
    if password_hash is None:
        password_hash = hash_password(validate_password(password))
    display_name = validate_display_name(username if display_name is None else display_name)
    try:
        with database.atomic():
            for _ in range(10):
                public_id = new_public_id()
                if not User.select().where(User.public_id == public_id).exists():
                    break
            return User.create(public_id=public_id, username=username, display_name=display_name,
                               password_hash=password_hash, is_admin=bool(is_admin))
    except pw.IntegrityError:
        raise Conflict(f"username {username!r} is taken") from None


def get_by_public_id(user_id: str) -> User:
    user = User.get_or_none(User.public_id == user_id)
    if user is None:
        raise NotFound(f"user {user_id!r} not found")
    return user


def set_admin(user: User, is_admin: bool, *, by: User) -> User:
    """Make *user* an admin or take it back. An admin never changes their own
    flag (no one locks themselves out), and the last admin stays one."""
    if user.id == by.id:
        raise Conflict("you cannot change your own admin rights; ask another admin")
    with database.atomic():
        if isinstance(database.obj, pw.PostgresqlDatabase):
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_ADMINS_LOCK,))
        if not is_admin and not User.select().where(
                User.is_admin & (User.id != user.id)).exists():
            raise Conflict(f"{user.username!r} is the last admin")
        User.update(is_admin=is_admin).where(User.id == user.id).execute()
    user.is_admin = is_admin
    return user


def check_deletable(user: User, *, by: User) -> None:
    """An admin never deletes their own account through the API (nor, so, the last
    admin: the caller is another one). The host's `appliance user delete` may."""
    if user.id == by.id:
        raise Conflict("you cannot delete your own account here; ask another admin")


async def delete_user(user: User) -> None:
    for hook in delete_hooks:
        await hook(user)
    user.delete_instance(recursive=True)


def as_dict(user: User) -> dict:
    return {"username": user.username, "display_name": user.display_name,
            "user_id": user.public_id, "is_admin": user.is_admin}


def live_sessions() -> list[dict]:
    """Sessions signed in now (unexpired, not logged out), newest first, with
    their user: one query."""
    revoked = RevokedSession.select(RevokedSession.jti)
    rows = (LoginSession.select(LoginSession, User.public_id, User.username, User.display_name)
            .join(User).where((LoginSession.expires_at > now()) & LoginSession.id.not_in(revoked))
            .order_by(LoginSession.created_at.desc(), LoginSession.id))
    return [{"id": r.id, "user_id": r.user.public_id, "username": r.user.username,
             "display_name": r.user.display_name, "ip_address": r.ip_address,
             "created_at": r.created_at, "last_seen_at": r.last_seen_at} for r in rows]
