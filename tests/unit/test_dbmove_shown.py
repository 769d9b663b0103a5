"""appliance db migrate's messages (core/dbmove.py): a database URL is shown without its password,
however the password is spelled."""
import pytest

from appliance.core.dbmove import shown


@pytest.mark.parametrize("url, secret", [
    ("postgresql://appliance:hunter2@db:5432/appliance", "hunter2"),                    # hidden: fine
    ("postgresql://appliance:hun%2Fter2@db/appliance", "hun%2Fter2"),                   # hidden: fine
    ("postgresql://appliance@db/appliance?password=hunter2", "hunter2"),
    ("postgresql://appliance:hun/ter2@db/appliance", "hun/ter2"),
    ("postgresql://appliance:hun#ter2@db/appliance", "hun#ter2"),
])
def test_dbmove_never_prints_the_password(url, secret):
    assert secret not in shown(url)
