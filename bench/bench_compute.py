"""Guest start latency: raw libvirt vs the appliance's REST API, one run.

- raw libvirt: ``defineXML`` + ``create`` of the very guest XML the
  appliance's LXC driver builds, over a runtime it prepared once (overlay
  root, volume, mounts, host keys, limits, NIC), timed until libvirt
  reports the guest's init (what the guest needs before it goes on); then
  until sshd answers (its ``SSH-`` banner on port 22).
- appliance: ``POST /compute/containers`` (status socket already open)
  until the socket says ``running``; then until sshd answers. Each run
  creates a new container (fresh volume, host keys, overlay) and deletes it
  afterwards (not timed).

Prints medians (and p90) over ``--runs`` (>= 10) runs per side, plus the
ratio appliance/raw. Targets (issue 4): p50 create -> running <= 300 ms and
<= 3 x raw libvirt. Needs root, libvirtd (started if needed) and the image.

    python -m bench.bench_compute [--runs 15]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from compute_support import StatusSocket, add_key  # noqa: E402
from harness import Appliance, wait_for_sshd  # noqa: E402

BRIDGE, SUBNET = "apbenchc0", "10.216.0.0/24"
RAW_IP = "10.216.0.250"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]


class RawGuest:
    """The appliance's own guest (the LXC driver builds its runtime and XML:
    overlay root, idmapped image, volume, mounts, keys, limits, NIC), prepared
    once; each run is bare libvirt: defineXML + create, then destroy + undefine."""

    def __init__(self, tmp: Path, image_dir: str):
        import libvirt

        from appliance.drivers.base import GuestSpec
        from appliance.drivers.lxc.driver import LxcDriver, veth_name
        from appliance.host import network

        self.driver = LxcDriver(image_dir=image_dir, data_dir=tmp / "raw", bridge=BRIDGE, subnet=SUBNET)
        self.spec = GuestSpec(id="rawbench", ip=RAW_IP, memory_mb=512, cpus=0.5, storage_gb=1)
        self.driver.volumes.create(self.spec.id, self.spec.storage_gb)
        self.xml = self.driver._prepare_runtime(self.spec)
        network.add_guest_port(BRIDGE, veth_name(self.spec.id), network.mac_for_ip(RAW_IP), RAW_IP)
        self.conn = libvirt.open("lxc:///")

    def start(self):
        from appliance.drivers.lxc import domain

        dom = self.conn.defineXML(self.xml)
        dom.create()
        # what libvirt needs before the guest's init goes on (the driver does the same)
        domain.wait_for_init(dom)
        if hasattr(self.driver, "_limit_pids"):
            self.driver._limit_pids(self.spec, dom)
        return dom

    def stop(self, dom) -> None:
        dom.destroy()
        dom.undefine()

    def close(self) -> None:
        self.conn.close()
        self.driver.destroy(self.spec.id)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    args.runs = max(10, args.runs)
    if os.geteuid() != 0:
        sys.exit("bench_compute needs root (libvirt LXC guests)")

    from appliance import config as config_mod
    from appliance.host import image, network
    from appliance.host import libvirtd as host

    host.ensure_libvirtd()
    image_dir = config_mod.load().image_dir
    image.ensure_image(image_dir)
    raw_start, raw_ssh, api_running, api_ssh = [], [], [], []
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        tmp = Path(tmp)
        app = Appliance(tmp / "app", guest_driver="lxc", bridge_name=BRIDGE, guest_subnet=SUBNET,
                        max_containers_per_user=1000, log_level="WARNING").start()
        raw = None
        try:
            admin = app.admin()
            key_id, _ = add_key(admin)
            network.ensure_guest_network(BRIDGE, SUBNET)
            raw = RawGuest(tmp, image_dir)
            ws = StatusSocket(app, admin.token)
            for i in range(args.runs + 1):  # run 0 warms both sides up
                t0 = time.perf_counter()
                dom = raw.start()
                t1 = time.perf_counter()
                wait_for_sshd(RAW_IP)
                t2 = time.perf_counter()
                raw.stop(dom)

                t3 = time.perf_counter()
                r = admin.post("/compute/containers", json={"name": f"bench{i}", "ssh_key_ids": [key_id],
                                                            "storage_gb": 1})
                cid, ip = r.json()["id"], r.json()["external_ip"]
                event = ws.wait(cid, "running", "error", timeout=60)
                t4 = time.perf_counter()
                if event["status"] != "running":
                    sys.exit(f"guest failed: {admin.get(f'/compute/containers/{cid}').json()}")
                wait_for_sshd(ip)
                t5 = time.perf_counter()
                admin.delete(f"/compute/containers/{cid}")
                if i:
                    raw_start.append(t1 - t0)
                    raw_ssh.append(t2 - t0)
                    api_running.append(t4 - t3)
                    api_ssh.append(t5 - t3)
            ws.close()
        finally:
            if raw is not None:
                raw.close()
            app.close()
            network.remove_guest_network(BRIDGE)

    ms = lambda v: f"{statistics.median(v) * 1000:7.1f} {pct(v, 0.9) * 1000:7.1f}"  # noqa: E731
    print(f"guest start latency, {args.runs} runs each (ms)      p50     p90")
    print(f"raw libvirt defineXML+create               {ms(raw_start)}")
    print(f"raw libvirt -> sshd answering              {ms(raw_ssh)}")
    print(f"POST /compute/containers -> running (ws)   {ms(api_running)}")
    print(f"POST /compute/containers -> sshd answering {ms(api_ssh)}")
    ratio = statistics.median(api_running) / statistics.median(raw_start)
    ratio_ssh = statistics.median(api_ssh) / statistics.median(raw_ssh)
    p50 = statistics.median(api_running) * 1000
    print(f"ratio create->running / raw define+start: {ratio:.2f}x (target <= 3x)")
    print(f"ratio create->sshd / raw ->sshd:          {ratio_ssh:.2f}x")
    print(f"target p50 create->running <= 300 ms: {p50:.0f} ms -> {'met' if p50 <= 300 and ratio <= 3 else 'MISSED'}")


if __name__ == "__main__":
    main()
