import pytest

from appliance.core.auth.users import validate_login_name
from appliance.errors import Invalid
from appliance.logsafe import clip


def test_clip_keeps_short_values_and_cuts_long_ones_with_a_marker():
    assert clip("alice") == "'alice'"
    assert clip("a" * 64) == repr("a" * 64)
    assert clip("b" * 200_000) == repr("b" * 64) + "+199936 chars"
    assert "\n" not in clip("evil\nINFO forged line")


@pytest.mark.parametrize("name", ["x" * 65, "x" * (1 << 20), "", "has space", "a\nb"])
def test_login_names_that_cannot_be_usernames_are_invalid(name):
    with pytest.raises(Invalid):
        validate_login_name(name)


def test_login_names_up_to_64_are_fine():
    assert validate_login_name("a" * 64) == "a" * 64
