import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Appliance, Client  # noqa: E402

_names = itertools.count()


@pytest.fixture(scope="session")
def appliance(tmp_path_factory):
    """One real core + gateway for the session; tests isolate by creating users."""
    # The whole suite signs its users in from 127.0.0.1 within minutes: more
    # than the per-address rate of successful logins a production client gets.
    app = Appliance(tmp_path_factory.mktemp("appliance"), login_max_successes_per_address=1_000_000)
    app.start()
    yield app
    app.close()


@pytest.fixture(scope="session")
def admin(appliance) -> Client:
    return appliance.admin()


@pytest.fixture
def make_user(appliance, admin):
    """make_user(is_admin=False) -> a logged-in Client for a brand-new user."""
    def make(is_admin: bool = False, password: str = "pw-123456") -> Client:
        name = f"user{next(_names)}_{id(appliance) % 1000}"
        r = admin.post("/admin/users", json={"username": name, "password": password, "is_admin": is_admin})
        assert r.status_code == 200, r.text
        client = appliance.login(name, password)
        client.password = password
        return client
    return make


@pytest.fixture
def user(make_user) -> Client:
    return make_user()
