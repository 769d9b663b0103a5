"""users.set_admin (PUT /admin/users/{user_id}): never the caller's own flag,
never the last admin's; the row and the returned user agree."""
from __future__ import annotations

import pytest

from appliance.core.auth import users
from appliance.core.db import User, open_database
from appliance.errors import Conflict


@pytest.fixture
def people(tmp_path):
    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    hashed = "not-a-real-hash"   # the flag is all that matters here
    return [users.create_user(name, "", None, is_admin, password_hash=hashed)
            for name, is_admin in (("root", True), ("ann", False), ("bob", False))]


def admins() -> list[str]:
    return [u.username for u in User.select().where(User.is_admin).order_by(User.id)]


def test_promote_and_demote(people):
    root, ann, _ = people
    assert users.set_admin(ann, True, by=root).is_admin is True
    assert admins() == ["root", "ann"]
    assert users.set_admin(ann, False, by=root).is_admin is False
    assert admins() == ["root"]


def test_not_ones_own_flag(people):
    root, *_ = people
    for flag in (False, True):
        with pytest.raises(Conflict, match="your own admin rights"):
            users.set_admin(root, flag, by=root)
    assert admins() == ["root"]


def test_the_last_admin_stays_one(people):
    # reached when two admins demote each other at once: the later one finds itself the
    # last (the API refuses a caller who is no longer an admin before it gets here)
    root, ann, _ = people
    with pytest.raises(Conflict, match="'root' is the last admin"):
        users.set_admin(root, False, by=ann)
    assert admins() == ["root"]
    users.set_admin(ann, True, by=root)
    users.set_admin(root, False, by=ann)
    assert admins() == ["ann"]
