import secrets
from pathlib import Path

import pytest
from lab_support import Lab, bring_up, tear_down

HERE = Path(__file__).resolve().parent
_down: list[bool] = []


def _tear_down_once() -> None:
    if not _down:
        _down.append(True)
        tear_down()


@pytest.fixture(scope="session")
def lab() -> Lab:
    """`make lab` for the session (a failed `up` removes what it made), `make lab-down` after."""
    lab = bring_up("lab-" + secrets.token_urlsafe(8))
    try:
        yield lab
    finally:
        _tear_down_once()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """The lab goes down after its last test, not at the session's end: its three hosts'
    daemons would idle beside the rest of the suite (a failure is this test's teardown error)."""
    yield
    if "lab" in item.fixturenames and (nextitem is None or HERE not in nextitem.path.parents):
        _tear_down_once()
