"""Unit tests of the isolation pieces that need no guest: id-range
allocation, ownership remapping, and the nftables rules the network guard
writes (checked as text; tests/integration/test_isolation.py attacks them)."""
import os
import threading

import pytest

from appliance.host import idmap, network


def test_ranges_are_distinct_persistent_and_reused_after_release(tmp_path):
    alloc = idmap.IdRangeAllocator(tmp_path)
    a, b = alloc.ensure("a"), alloc.ensure("b")
    assert a.base == idmap.FIRST_HOST_ID and b.base == a.base + idmap.RANGE_SIZE
    assert alloc.ensure("a") == a, "idempotent"
    assert idmap.IdRangeAllocator(tmp_path).get("a") == a, "persisted"
    alloc.release("a")
    assert alloc.get("a") is None
    assert alloc.ensure("c") == a
    assert a.host(0) == a.base and a.host(65535) == a.base + 65535
    with pytest.raises(ValueError):
        a.host(65536)


def test_concurrent_allocations_never_share_a_range(tmp_path):
    alloc = idmap.IdRangeAllocator(tmp_path)
    got = {}

    def take(i):
        got[i] = alloc.ensure(f"g{i}").base

    threads = [threading.Thread(target=take, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got.values())) == 20


def test_allocator_runs_out_cleanly(tmp_path):
    alloc = idmap.IdRangeAllocator(tmp_path, max_slots=2)
    alloc.ensure("a"), alloc.ensure("b")
    with pytest.raises(idmap.IdmapError):
        alloc.ensure("c")


def test_the_whole_range_space_fits_below_the_invalid_uid():
    assert idmap.FIRST_HOST_ID + idmap.MAX_SLOTS * idmap.RANGE_SIZE <= (1 << 32) - 1


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_remap_moves_only_ids_of_the_old_range_and_keeps_setuid(tmp_path):
    (tmp_path / "d").mkdir()
    f = tmp_path / "d" / "f"
    f.write_text("x")
    os.chown(f, 1000, 1000)
    os.chmod(f, 0o4755)
    foreign = tmp_path / "d" / "foreign"
    foreign.write_text("y")
    os.chown(foreign, 70000, 70000)
    os.symlink("/etc/passwd", tmp_path / "d" / "link")
    base = idmap.FIRST_HOST_ID
    assert idmap.remap_tree(tmp_path / "d", 0, base) == 3   # d, f, link
    assert (f.stat().st_uid, f.stat().st_gid) == (base + 1000, base + 1000)
    assert f.stat().st_mode & 0o7777 == 0o4755
    assert foreign.stat().st_uid == 70000
    assert os.lstat(tmp_path / "d" / "link").st_uid == base
    assert os.stat("/etc/passwd").st_uid == 0, "symlinks are not followed"
    idmap.remap_tree(tmp_path / "d", base, base + idmap.RANGE_SIZE)
    assert f.stat().st_uid == base + idmap.RANGE_SIZE + 1000


def test_guard_rules(monkeypatch):
    scripts = []
    monkeypatch.setattr(network, "_nft", scripts.append)
    network.ensure_guard("apbr0", public_ports=(2222, 80))
    script = scripts[0]
    lines = script.splitlines()
    names = network.guard_chains("apbr0")
    # input: replies and public ports, then drop - in this order
    i_est = lines.index(f'add rule ip appliance {names["input"]} iifname "apbr0" ct state established,related accept')
    i_pub = lines.index(f'add rule ip appliance {names["input"]} iifname "apbr0" tcp dport {{ 80, 2222 }} accept')
    i_drop = lines.index(f'add rule ip appliance {names["input"]} iifname "apbr0" counter drop')
    assert i_est < i_pub < i_drop
    assert f"flush chain ip appliance {names['input']}" in lines
    # the port set is never flushed (running guests keep their entries)
    assert not any(line.startswith("flush set") for line in lines)
    assert "ether type != { ip, arp } counter drop" in script
    # nothing from the bridge to or from 127.0.0.0/8, before conntrack and DNAT (priority raw)
    assert f"add chain ip appliance {names['pre']} {{ type filter hook prerouting priority raw; }}" in lines
    assert f'add rule ip appliance {names["pre"]} iifname "apbr0" ip daddr 127.0.0.0/8 counter drop' in lines
    assert f'add rule ip appliance {names["pre"]} iifname "apbr0" ip saddr 127.0.0.0/8 counter drop' in lines
    assert f"add rule bridge appliance {names['isolate']} iifname @{names['ifaces']} counter drop" in lines


def test_guard_without_public_ports_has_no_accept_hole(monkeypatch):
    scripts = []
    monkeypatch.setattr(network, "_nft", scripts.append)
    network.ensure_guard("apbr0")
    assert "dport" not in scripts[0]


def test_guest_port_entries_are_validated():
    with pytest.raises(network.NetworkError):
        network.add_guest_port("apbr0", "ap-x; flush ruleset", "02:a9:0a:d9:00:07", "10.217.0.7")
    with pytest.raises(ValueError):
        network.add_guest_port("apbr0", "ap-x", "02:a9:0a:d9:00:07", "10.217.0.300")
