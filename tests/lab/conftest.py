import secrets

import pytest
from lab_support import Lab, bring_up, tear_down


@pytest.fixture(scope="session")
def lab() -> Lab:
    """`make lab` for the session (a failed `up` removes what it made), `make lab-down` after."""
    lab = bring_up("lab-" + secrets.token_urlsafe(8))
    try:
        yield lab
    finally:
        tear_down()
