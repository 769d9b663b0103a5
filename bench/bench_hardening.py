"""What the security fixes cost: the same measurements against this checkout and
against a baseline commit (before the fixes), interleaved in one run.

Two real appliances run side by side on their own bridges, one on the code of
``--baseline`` (a detached git worktree, put first on PYTHONPATH of its
processes) and one on this checkout. Rounds alternate the order. Measured:

- guest create -> running: ``POST /compute/containers`` until the status
  socket says ``running`` (a fresh container each time, deleted untimed);
- upload MB/s: ``PUT /storage/{ns}/{name}`` of ``--mb`` MiB from a file
  (every write to a new name; ``sync`` before each, untimed);
- terminal keystroke echo through the terminal WebSocket (p50 of each round's p50);
- SSH through the gateway: ``ssh <id>@host true`` wall time (p50).

Prints each figure for both sides and the ratio current/baseline; the target
is "no more than 5% worse" (issues 11 and 19). Needs root, libvirtd, the image.

    python -m bench.bench_hardening [--baseline REF] [--rounds 10] [--mb 256]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from access_support import Person, launch, ssh_argv, stop_appliance, wait_port  # noqa: E402
from compute_support import StatusSocket  # noqa: E402
from harness import Appliance, free_port, wait_for_sshd  # noqa: E402

from bench.bench_access import echo_latency  # noqa: E402

# The last commit before the fixes of issues 11 and 19.
DEFAULT_BASELINE = "97c5011"
SIDES = {"baseline": ("aphb0", "10.214.0.0/24"), "current": ("aphc0", "10.215.0.0/24")}


def start(side: str, data_dir: Path, image_dir: str, pythonpath: str | None) -> Appliance:
    bridge, subnet = SIDES[side]
    ssh_port = free_port()
    app = Appliance(data_dir, guest_driver="lxc", bridge_name=bridge, guest_subnet=subnet, image_dir=image_dir,
                    ssh_port=ssh_port, ssh_listen="127.0.0.1", compute_domain="compute.test",
                    max_containers_per_user=1000, log_level="WARNING")
    if pythonpath:
        app.env["PYTHONPATH"] = pythonpath
    app.ssh_port = ssh_port
    app.start("core", "http", "ssh")
    wait_port("127.0.0.1", ssh_port)
    return app


class Side:
    def __init__(self, name: str, app: Appliance, tmp: Path):
        self.name, self.app = name, app
        self.admin = app.admin()
        self.person = Person(app, self.admin, tmp / f"keys-{name}")
        self.client = self.person.client
        r = self.client.post("/storage/namespaces", json={"name": "bench", "visibility": 0})
        assert r.status_code == 200, r.text
        self.ws = StatusSocket(app, self.client.token)
        self.figures: dict[str, list[float]] = {"create": [], "upload": [], "echo": [], "ssh": []}
        self.uploads = 0

    def create_to_running(self) -> float:
        started = time.perf_counter()
        r = self.client.post("/compute/containers", json={"name": "hb", "storage_gb": 1,
                                                        "ssh_key_ids": [self.person.key_id]})
        assert r.status_code == 200, r.text
        cid = r.json()["id"]
        event = self.ws.wait(cid, "running", "error", timeout=60)
        took = time.perf_counter() - started
        assert event["status"] == "running", event
        assert self.client.delete(f"/compute/containers/{cid}").status_code == 200
        return took * 1000

    def upload(self, src: Path, mb: int) -> float:
        subprocess.run(["sync"], check=True)
        self.uploads += 1
        with open(src, "rb") as f:
            started = time.perf_counter()
            r = self.client.put(f"/storage/bench/blob{self.uploads}", data=f,
                                headers={"Content-Length": str(mb << 20)})
            took = time.perf_counter() - started
        assert r.status_code == 200, r.text
        return mb / took

    def ssh_true(self, cid: str) -> float:
        argv = ssh_argv(self.app, self.person.key_file, cid) + ["true"]
        started = time.perf_counter()
        r = subprocess.run(argv, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        took = time.perf_counter() - started
        assert r.returncode == 0, r.stderr
        return took * 1000


def baseline_tree(ref: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where), ref],
                   check=True, capture_output=True)
    return where


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default=DEFAULT_BASELINE)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--keys", type=int, default=60, help="keystrokes per echo sample")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_hardening needs root (libvirt LXC guests)")

    from appliance import config as config_mod
    from appliance.host import image
    from appliance.host import libvirtd as host

    host.ensure_libvirtd()
    image_dir = config_mod.load().image_dir
    image.ensure_image(image_dir)
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="bench-hardening-") as tmpdir:
        tmp = Path(tmpdir)
        old = baseline_tree(args.baseline, tmp / "baseline-src")
        src = tmp / "upload.bin"
        with open(src, "wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1 << 20))
        sides: list[Side] = []
        try:
            for name, path in (("baseline", str(old)), ("current", None)):
                sides.append(Side(name, start(name, tmp / f"data-{name}", image_dir, path), tmp))
            guests = {}
            for s in sides:
                guest = launch(s.app, s.person, ssh_enabled=True, storage_gb=1)
                wait_for_sshd(guest["external_ip"])
                guests[s.name] = guest["id"]
            for round_no in range(args.rounds + 1):  # round 0 warms both sides up
                for s in (sides if round_no % 2 else sides[::-1]):
                    figures = {"create": s.create_to_running(), "upload": s.upload(src, args.mb),
                               "ssh": s.ssh_true(guests[s.name]),
                               "echo": echo_latency(s.app, s.person, guests[s.name], args.keys)[0]}
                    if round_no:
                        for key, value in figures.items():
                            s.figures[key].append(value)
        finally:
            for s in sides:
                s.ws.close()
            for s, name in zip(sides, SIDES, strict=False):  # sides is short when a start failed
                stop_appliance(s.app, SIDES[name][0])
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                           capture_output=True)

    base, cur = sides
    print(f"baseline {args.baseline} vs this checkout, {args.rounds} interleaved rounds (medians)")
    print(f"{'':34} {'baseline':>10} {'current':>10} {'ratio':>7}")
    rows = (("create -> running (ms, lower=better)", "create", False),
            (f"upload PUT {args.mb} MiB (MB/s)", "upload", True),
            ("terminal echo p50 (ms)", "echo", False),
            ("ssh via gateway `true` (ms)", "ssh", False))
    verdicts = []
    for label, key, higher_better in rows:
        b, c = statistics.median(base.figures[key]), statistics.median(cur.figures[key])
        ratio = c / b
        worse = (1 / ratio if higher_better else ratio) - 1
        verdicts.append(worse <= 0.05)
        print(f"{label:34} {b:10.1f} {c:10.1f} {ratio:7.2f}  {'ok' if worse <= 0.05 else f'{worse:+.0%} worse'}")
    print("within 5% of the baseline: " + ("yes" if all(verdicts) else "NO"))


if __name__ == "__main__":
    main()
