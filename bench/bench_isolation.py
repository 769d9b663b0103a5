"""What isolation costs at guest start: create -> running and -> sshd, with and without user namespaces.

Three driver configurations in the same run, interleaved (one spawn of each
per round, so drift in the host's load hits all alike), each spawn a fresh
guest (new volume, first start) that is destroyed afterwards:

- ``privileged``: no user namespace, no pids limit (the driver before isolation)
- ``privileged+pids``: pids cgroup only (init waits to be moved into it)
- ``userns+pids``: the default now (idmapped image mount, shifted volume seed,
  ``<idmap>``, pids cgroup)

All three have the network guards (a set lookup per packet; not a start
cost). Also timed alone: making one idmapped mount of the image, and what
the alternative - a per-guest chown'd copy of the image - would cost at
each first start. Medians over ``--runs`` (default 10). Needs root and libvirt.

    python -m bench bench_isolation          # or: python bench/bench_isolation.py --runs 20
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from harness import wait_for_sshd  # noqa: E402

BRIDGE = "apbenchi0"
SUBNET = "10.225.0.0/24"
IPS = {"privileged": "10.225.0.10", "privileged+pids": "10.225.0.11", "userns+pids": "10.225.0.12"}


def idmapped_mount_ms(image: Path, runs: int) -> list[float]:
    from appliance.host import idmap

    times = []
    with tempfile.TemporaryDirectory(prefix="bench-idmap-") as d:
        target = Path(d) / "lower"
        target.mkdir()
        for i in range(runs):
            t0 = time.perf_counter()
            idmap.idmapped_bind_mount(image, target, idmap.IdRange(idmap.FIRST_HOST_ID + i * idmap.RANGE_SIZE))
            times.append(time.perf_counter() - t0)
            subprocess.run(["umount", str(target)], check=True)
    return times


def chowned_copy_seconds(image: Path, scratch: Path) -> tuple[float, float]:
    """The alternative to idmapped mounts: copy the image and shift every owner."""
    from appliance.host import idmap

    copy = scratch / "shifted-image"
    t0 = time.perf_counter()
    subprocess.run(["cp", "-a", "--reflink=auto", str(image), str(copy)], check=True)
    t1 = time.perf_counter()
    idmap.remap_tree(copy, 0, idmap.FIRST_HOST_ID)
    t2 = time.perf_counter()
    shutil.rmtree(copy)
    return t1 - t0, t2 - t1


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--image-dir", default=None)
    args = parser.parse_args(argv)

    from appliance import config
    from appliance.drivers.base import GuestSpec
    from appliance.drivers.lxc.driver import DEFAULT_PIDS_MAX, LxcDriver
    from appliance.host import network

    image_dir = args.image_dir or config.load().image_dir
    modes = {"privileged": dict(userns=False, pids_max=0),
             "privileged+pids": dict(userns=False, pids_max=DEFAULT_PIDS_MAX),
             "userns+pids": dict(userns=True, pids_max=DEFAULT_PIDS_MAX)}
    started = {m: [] for m in modes}
    ssh_ready = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(prefix="bench-isolation-") as tmp:
        drivers = {m: LxcDriver(image_dir=image_dir, data_dir=Path(tmp, m), bridge=BRIDGE, subnet=SUBNET, **kw)
                   for m, kw in modes.items()}
        first = next(iter(drivers.values()))
        first.prepare_host(build_image=True)
        image = first.image
        try:
            for rnd in range(args.runs + 1):        # round 0 warms caches, not counted
                for mode, driver in drivers.items():
                    spec = GuestSpec(id=f"bi{uuid.uuid4().hex[:8]}", ip=IPS[mode], memory_mb=512, cpus=0.5,
                                     storage_gb=1, mount_paths=("/root",))
                    t0 = time.perf_counter()
                    try:
                        driver.spawn(spec)
                        t1 = time.perf_counter()
                        wait_for_sshd(spec.ip)
                        t2 = time.perf_counter()
                    finally:
                        driver.destroy(spec.id)
                    if rnd:
                        started[mode].append(t1 - t0)
                        ssh_ready[mode].append(t2 - t0)
            mount_times = idmapped_mount_ms(image, args.runs)
            copy_s, chown_s = chowned_copy_seconds(image, Path(tmp))
        finally:
            network.remove_guest_network(BRIDGE)

    def ms(values: list[float]) -> str:
        return (f"{statistics.median(values) * 1000:7.1f} ms"
                f" (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})")

    print(f"runs: {args.runs} per configuration, interleaved, medians; kernel {os.uname().release}")
    for mode in modes:
        print(f"{mode:16s} spawn -> running : {ms(started[mode])}")
        print(f"{mode:16s} spawn -> sshd    : {ms(ssh_ready[mode])}")
    base, now = "privileged", "userns+pids"
    for label, data in (("running", started), ("sshd", ssh_ready)):
        print(f"ratio {now} / {base} ({label}): "
              f"{statistics.median(data[now]) / statistics.median(data[base]):.2f}x "
              f"(+{(statistics.median(data[now]) - statistics.median(data[base])) * 1000:.1f} ms)")
    print(f"one idmapped mount of the image  : {ms(mount_times)}")
    print(f"alternative, chown'd image copy  : cp -a {copy_s:.2f} s + chown {chown_s:.2f} s per guest first start")


if __name__ == "__main__":
    main()
