"""Guest start: raw libvirt define+start of a guest's XML vs the LXC driver's spawn.

Both use the same guest (image, overlay root, mounts, limits, network). Raw
libvirt gets everything prepared in advance and measures only
``defineXML`` + ``create``; the driver's spawn also creates the volume,
resets the overlay layer, writes keys and config and waits until libvirt
reports the guest's init. Both are also timed until sshd in the guest sends
its banner. (Raw libvirt also waits for init and moves it into its pids
cgroup: the guest's init starts nothing before that.) Medians over ``--runs`` (default 10). Needs root and libvirt.

    python -m bench bench_guest_start          # or: python bench/bench_guest_start.py --runs 20
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import wait_for_sshd  # noqa: E402

BRIDGE = "apbench0"
SUBNET = "10.227.0.0/24"
GUEST_IP = "10.227.0.10"


def bench_raw(driver, spec, runs: int) -> tuple[list[float], list[float]]:
    import libvirt

    from appliance.drivers.lxc import domain

    driver.volumes.create(spec.id, spec.storage_gb)
    xml = driver._prepare_runtime(spec)      # root, volume, keys: prepared once, outside the timing
    conn = libvirt.open("lxc:///")
    started, ssh_ready = [], []
    try:
        for _ in range(runs):
            t0 = time.perf_counter()
            dom = conn.defineXML(xml)
            dom.create()
            domain.wait_for_init(dom)
            driver._limit_pids(spec, dom)   # the guest's init waits for its pids cgroup
            started.append(time.perf_counter() - t0)
            wait_for_sshd(spec.ip)
            ssh_ready.append(time.perf_counter() - t0)
            dom.destroy()
            dom.undefine()
    finally:
        conn.close()
        driver.destroy(spec.id)
    return started, ssh_ready


def bench_driver(driver, make_spec, runs: int) -> tuple[list[float], list[float]]:
    started, ssh_ready = [], []
    for _ in range(runs):
        spec = make_spec()
        t0 = time.perf_counter()
        try:
            driver.spawn(spec)
            started.append(time.perf_counter() - t0)
            wait_for_sshd(spec.ip)
            ssh_ready.append(time.perf_counter() - t0)
        finally:
            driver.destroy(spec.id)
    return started, ssh_ready


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--image-dir", default=None)
    args = parser.parse_args(argv)

    from appliance import config
    from appliance.drivers.base import GuestSpec
    from appliance.drivers.lxc.driver import LxcDriver
    from appliance.host import network

    image_dir = args.image_dir or config.load().image_dir
    with tempfile.TemporaryDirectory(prefix="bench-guest-") as data_dir:
        driver = LxcDriver(image_dir=image_dir, data_dir=data_dir, bridge=BRIDGE, subnet=SUBNET)
        driver.prepare_host(build_image=True)

        def make_spec() -> GuestSpec:
            return GuestSpec(id=f"bn{uuid.uuid4().hex[:8]}", ip=GUEST_IP, memory_mb=512, cpus=0.5,
                             storage_gb=1, mount_paths=("/root",), authorized_keys=())

        try:
            make_spec_warm = make_spec()
            driver.spawn(make_spec_warm)         # warm caches (image pages, libvirt)
            driver.destroy(make_spec_warm.id)
            raw_start, raw_ssh = bench_raw(driver, make_spec(), args.runs)
            drv_start, drv_ssh = bench_driver(driver, make_spec, args.runs)
        finally:
            network.remove_guest_network(BRIDGE)

    def ms(values: list[float]) -> str:
        return (f"{statistics.median(values) * 1000:7.1f} ms"
                f" (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})")

    print(f"runs: {args.runs} each, medians")
    print(f"raw libvirt define+start            : {ms(raw_start)}")
    print(f"raw libvirt define+start -> sshd    : {ms(raw_ssh)}")
    print(f"driver spawn (init running)         : {ms(drv_start)}")
    print(f"driver spawn -> sshd answering      : {ms(drv_ssh)}")
    print(f"ratio spawn / raw start             : {statistics.median(drv_start) / statistics.median(raw_start):.2f}x")
    print(f"ratio spawn->sshd / raw->sshd       : {statistics.median(drv_ssh) / statistics.median(raw_ssh):.2f}x")


if __name__ == "__main__":
    main()
