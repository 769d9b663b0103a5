import itertools
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Appliance, Client  # noqa: E402

# The storage modules' SeaweedFS set and appliance, shared by the session (started when first asked for).
from storage_backends import session_seaweed_appliance, session_seaweed_set  # noqa: E402, F401

_names = itertools.count()

# -- a skip is a failure where everything can run ---------------------------------------
# As root (how CI runs `make test`, on a machine with libvirt, PostgreSQL and the
# install test's tools), every test can run: a skip there means a test that did not
# prove anything, so the run fails and names it. Developers running a deliberate
# subset as root (e.g. with a tool they have not installed) set this to 1.
ALLOW_SKIPS_ENV = "APPLIANCE_TEST_ALLOW_SKIPS"
_skipped: list[tuple[str, str]] = []


def _skips_are_fatal() -> bool:
    return os.geteuid() == 0 and os.environ.get(ALLOW_SKIPS_ENV, "") in ("", "0")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:   # (path, line, "Skipped: why")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_collectreport(report):
    if report.skipped:   # a module-level pytest.skip / importorskip
        _skipped.append((report.nodeid, _skip_reason(report)))


# Seconds per test module (setup + call + teardown of its tests), printed at the end of
# every run beside --durations: what a CI log needs to see where the suite's time goes.
_module_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    module = report.nodeid.split("::", 1)[0]
    _module_seconds[module] = _module_seconds.get(module, 0.0) + report.duration
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append((report.nodeid, _skip_reason(report)))


def pytest_collection_modifyitems(config, items):
    """Storage tests marked local_only are not repeated on SeaweedFS (deselected, not skipped)."""
    keep, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        on_seaweed = params.get("appliance") == "seaweedfs"
        (dropped if on_seaweed and item.get_closest_marker("local_only") else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_sessionfinish(session, exitstatus):
    if _skipped and _skips_are_fatal() and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _module_seconds:
        terminalreporter.write_sep("=", "seconds per test module (slowest 30)")
        for module, seconds in sorted(_module_seconds.items(), key=lambda kv: -kv[1])[:30]:
            terminalreporter.write_line(f"{seconds:8.1f} s  {module}")
    if not (_skipped and _skips_are_fatal()):
        return
    terminalreporter.write_sep("=", f"{len(_skipped)} skipped as root: the run fails", red=True, bold=True)
    for nodeid, reason in _skipped:
        terminalreporter.write_line(f"{nodeid}: {reason}")
    terminalreporter.write_line(
        "As root every test must run (scripts/install-deps.sh installs what they need). "
        f"To run a deliberate subset anyway: {ALLOW_SKIPS_ENV}=1.")


@pytest.fixture(scope="session")
def appliance(session_appliance):
    """One real core + gateway for the session; tests isolate by creating users.
    (Storage modules override it to run on each blob store: storage_backends.py.)"""
    return session_appliance


@pytest.fixture(scope="session")
def session_appliance(tmp_path_factory):
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
