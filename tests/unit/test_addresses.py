"""Guest address allocation: least recently used, with a quarantine."""
import pytest

from appliance.core.compute import addresses
from appliance.core.db import open_database
from appliance.host.network import NetworkError

SUBNET = "10.217.0.0/29"  # guests .2-.6


@pytest.fixture(autouse=True)
def database(tmp_path):
    open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")


def test_fresh_addresses_first_then_the_oldest_freed_after_quarantine():
    got = [addresses.allocate(SUBNET, [], 600, now=0)]
    got.append(addresses.allocate(SUBNET, got, 600, now=0))
    assert got == ["10.217.0.2", "10.217.0.3"]
    addresses.release("10.217.0.2", now=10)
    # .2 is the lowest free address but is in quarantine: never-used ones go first
    assert addresses.allocate(SUBNET, ["10.217.0.3"], 600, now=20) == "10.217.0.4"
    used = ["10.217.0.3", "10.217.0.4"]
    used.append(addresses.allocate(SUBNET, used, 600, now=20))
    used.append(addresses.allocate(SUBNET, used, 600, now=20))
    assert used[-2:] == ["10.217.0.5", "10.217.0.6"]
    with pytest.raises(NetworkError, match="quarantine"):
        addresses.allocate(SUBNET, used, 600, now=609)
    addresses.release("10.217.0.5", now=30)
    # both out of quarantine: the one freed longest ago
    assert addresses.allocate(SUBNET, used[:-2] + ["10.217.0.6"], 600, now=700) == "10.217.0.2"


def test_an_address_freed_unnoticed_starts_its_quarantine_when_seen():
    a = addresses.allocate(SUBNET, [], 600, now=0)
    # its container vanished without release(): all other addresses are held
    held = ["10.217.0.3", "10.217.0.4", "10.217.0.5", "10.217.0.6"]
    with pytest.raises(NetworkError, match="quarantine"):
        addresses.allocate(SUBNET, held, 600, now=1000)
    assert addresses.allocate(SUBNET, held, 600, now=1600) == a


def test_full_subnet():
    used = ["10.217.0.2", "10.217.0.3", "10.217.0.4", "10.217.0.5", "10.217.0.6"]
    with pytest.raises(NetworkError, match="no free guest address left"):
        addresses.allocate(SUBNET, used, 600, now=0)


def test_a_user_reuses_its_own_released_addresses_first_others_never_get_them_early():
    a = addresses.allocate(SUBNET, [], 600, now=0, owner="alice")
    addresses.release(a, now=10, owner="alice")
    # alice's create/delete loop cycles through her own address, in quarantine or not
    for t in range(20, 200, 10):
        assert addresses.allocate(SUBNET, [], 600, now=t, owner="alice") == a
        addresses.release(a, now=t + 1, owner="alice")
    # bob never gets alice's quarantined address, but the rest of the pool is intact
    got = []
    for _ in range(4):
        got.append(addresses.allocate(SUBNET, got, 600, now=300, owner="bob"))
    assert a not in got and len(set(got)) == 4
    with pytest.raises(NetworkError, match="quarantine"):
        addresses.allocate(SUBNET, got, 600, now=300, owner="bob")


def test_an_address_held_by_someone_else_since_is_no_longer_the_old_releasers():
    a = addresses.allocate(SUBNET, [], 600, now=0, owner="alice")
    addresses.release(a, now=10, owner="alice")
    held = ["10.217.0.3", "10.217.0.4", "10.217.0.5", "10.217.0.6"]
    # after the quarantine bob gets it; his container then vanishes without release()
    assert addresses.allocate(SUBNET, held, 600, now=700, owner="bob") == a
    with pytest.raises(NetworkError, match="quarantine"):
        addresses.allocate(SUBNET, held, 600, now=800, owner="alice")
    # freed unnoticed: who held it last is not recorded, so it is nobody's own
    with pytest.raises(NetworkError, match="quarantine"):
        addresses.allocate(SUBNET, held, 600, now=800, owner="bob")
    assert addresses.allocate(SUBNET, held, 600, now=1400, owner="carol") == a
