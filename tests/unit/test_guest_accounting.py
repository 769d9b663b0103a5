"""Where a guest's CPU time and memory are read (drivers/lxc/cgroups.py
``accounting``/``read_accounting``): cgroup v1 and v2 file formats, and this
very process's cgroups as the kernel lists them."""
from __future__ import annotations

import os

import pytest

from appliance.drivers.lxc.cgroups import Accounting, accounting, read_accounting


def test_v1_and_v2_files(tmp_path):
    (tmp_path / "cpuacct.usage").write_text("123456789\n")
    (tmp_path / "memory.usage_in_bytes").write_text("4096\n")
    (tmp_path / "memory.limit_in_bytes").write_text("9223372036854771712\n")   # v1's "no limit"
    v1 = Accounting(str(tmp_path / "cpuacct.usage"), str(tmp_path / "memory.usage_in_bytes"),
                    str(tmp_path / "memory.limit_in_bytes"))
    assert read_accounting(v1) == (123456789, 4096, 0)
    (tmp_path / "memory.limit_in_bytes").write_text("268435456\n")
    assert read_accounting(v1) == (123456789, 4096, 256 << 20)
    (tmp_path / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n")
    (tmp_path / "memory.current").write_text("8192\n")
    (tmp_path / "memory.max").write_text("max\n")
    v2 = Accounting(str(tmp_path / "cpu.stat"), str(tmp_path / "memory.current"), str(tmp_path / "memory.max"),
                    v2=True)
    assert read_accounting(v2) == (2_500_000, 8192, 0)
    (tmp_path / "memory.current").unlink()   # the cgroup is gone: the guest stopped
    with pytest.raises(OSError):
        read_accounting(v2)


def test_this_process_cgroups_are_found_and_read():
    acc = accounting(os.getpid())
    assert acc is not None
    cpu_ns, used, _ = read_accounting(acc)
    assert cpu_ns > 0 and used > 0
    assert accounting(2 ** 22 + 1) is None   # no such process
