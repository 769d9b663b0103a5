"""Reaching guests, one run on a real LXC guest:

- terminal: keystroke echo latency through the terminal WebSocket (one
  character sent as a binary frame -> the same character back from the
  guest's PTY echo), p50 / p99 over ``--keys`` keystrokes;
- SSH: ``scp`` of a ``--mb`` MB file into the guest and back, through the
  SSH gateway vs. directly to the guest's sshd (same client, same key,
  same cipher), MB/s and the ratio;
- ingress: TCP bulk throughput through an 8xxx rule (nftables DNAT, from
  the host to its own bridge address; 127.0.0.1 is not forwarded) vs.
  directly to the guest's address, MB/s and the ratio.

Targets (issue 5): echo p50 <= 5 ms; gateway bulk >= 50 MB/s.

    python -m bench.bench_access [--keys 300] [--mb 50] [--ingress-only]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from access_support import (  # noqa: E402
    Person,
    launch,
    scp_argv,
    start_appliance,
    stop_appliance,
)
from harness import wait_for_sshd  # noqa: E402

BRIDGE, SUBNET = "apbnch1", "10.226.0.0/24"
SINK = r"""
use IO::Socket::INET; $SIG{CHLD}='IGNORE';
my $s=IO::Socket::INET->new(LocalPort=>$ARGV[0],Listen=>16,ReuseAddr=>1) or die;
while (my $c=$s->accept) { if (!fork) { my ($b,$n)=('',0); while (my $r=sysread($c,$b,1<<20)) { $n+=$r }
  syswrite($c,"$n\n"); exit } close $c }
"""


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]


def echo_latency(app, person, cid: str, keys: int) -> tuple[float, float]:
    import websocket
    url = app.url.replace("http://", "ws://") + f"/compute/containers/{cid}/terminal?token={person.client.token}"
    ws = websocket.create_connection(url, timeout=20)
    ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # a quiet line discipline: cat echoes nothing itself, the PTY echoes each key
    ws.send_binary(b"stty -icanon; cat >/dev/null\r")
    time.sleep(1.0)
    ws.settimeout(0.2)
    try:
        while True:
            ws.recv()
    except websocket.WebSocketTimeoutException:
        pass
    ws.settimeout(10)
    samples = []
    for i in range(keys):
        ch = bytes([ord("a") + i % 26])
        started = time.perf_counter()
        ws.send_binary(ch)
        got = b""
        while ch not in got:
            got += ws.recv()
        samples.append((time.perf_counter() - started) * 1000)
    ws.close()
    return statistics.median(samples), pct(samples, 0.99)


def timed(argv) -> float:
    started = time.monotonic()
    r = subprocess.run(argv, capture_output=True, timeout=600)
    took = time.monotonic() - started
    if r.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {r.stderr.decode(errors='replace')[-500:]}")
    return took


def scp_direct_argv(key_file, ip, *paths):
    return ["scp", "-q", "-i", str(key_file), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            *[p.replace("GUEST", f"root@{ip}") for p in paths]]


def scp_figures(app, person, guest, mb: int, tmp: Path) -> dict:
    src = tmp / "bulk.bin"
    with open(src, "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    cid, ip = guest["id"], guest["external_ip"]
    out = {}
    for label, up, down in (
        ("gateway", scp_argv(app, person.key_file, str(src), f"{cid}@127.0.0.1:/root/bulk.bin"),
         scp_argv(app, person.key_file, f"{cid}@127.0.0.1:/root/bulk.bin", str(tmp / "back.bin"))),
        ("direct", scp_direct_argv(person.key_file, ip, str(src), "GUEST:/root/bulk.bin"),
         scp_direct_argv(person.key_file, ip, "GUEST:/root/bulk.bin", str(tmp / "back.bin"))),
    ):
        ups = [mb / timed(up) for _ in range(3)]
        downs = [mb / timed(down) for _ in range(3)]
        out[label] = (statistics.median(ups), statistics.median(downs))
    return out


def tcp_bulk(host: str, port: int, mb: int) -> float:
    chunk = os.urandom(1 << 20)
    with socket.create_connection((host, port), timeout=30) as s:
        started = time.monotonic()
        for _ in range(mb):
            s.sendall(chunk)
        s.shutdown(socket.SHUT_WR)
        reply = s.makefile("rb").readline()
        took = time.monotonic() - started
    assert int(reply) == mb << 20, reply
    return mb / took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--tcp-mb", type=int, default=500)
    parser.add_argument("--ingress-only", action="store_true", help="only the ingress figure")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("skipped: needs root (libvirt LXC guests)")
        return
    with tempfile.TemporaryDirectory(prefix="bench-access-") as tmpdir:
        tmp = Path(tmpdir)
        app = start_appliance(tmp / "data", BRIDGE, SUBNET)
        try:
            admin = app.admin()
            person = Person(app, admin, tmp / "keys")
            guest = launch(app, person, ssh_enabled=True, storage_gb=2)
            wait_for_sshd(guest["external_ip"])
            if not args.ingress_only:
                terminal_and_ssh(app, person, guest, args, tmp)
            ingress_figure(person, guest, args)
        finally:
            stop_appliance(app, BRIDGE)


def terminal_and_ssh(app, person, guest, args, tmp) -> None:
    cid = guest["id"]
    p50, p99 = echo_latency(app, person, cid, args.keys)
    print(f"terminal keystroke echo ({args.keys} keys): p50 {p50:.2f} ms, p99 {p99:.2f} ms "
          f"(target p50 <= 5 ms)")

    figures = scp_figures(app, person, guest, args.mb, tmp)
    (gu, gd), (du, dd) = figures["gateway"], figures["direct"]
    print(f"scp {args.mb} MB via gateway: up {gu:.0f} MB/s, down {gd:.0f} MB/s "
          f"(target >= 50 MB/s)")
    print(f"scp {args.mb} MB direct to guest sshd: up {du:.0f} MB/s, down {dd:.0f} MB/s")
    print(f"gateway/direct: up {gu / du:.2f}, down {gd / dd:.2f}")


def ingress_figure(person, guest, args) -> None:
    import ipaddress
    cid, ip = guest["id"], guest["external_ip"]
    host_address = str(next(ipaddress.ip_network(SUBNET).hosts()))  # the host's own bridge address
    subprocess.run(["ssh", "-i", str(person.key_file), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "LogLevel=ERROR", f"root@{ip}",
                    f"cat > /root/sink.pl <<'EOF'\n{SINK}\nEOF\nnohup perl /root/sink.pl 9100 "
                    ">/dev/null 2>&1 & sleep 0.3"], check=True, capture_output=True, timeout=60)
    r = person.client.post(f"/compute/containers/{cid}/ingress", json={"port": 8777, "target_port": 9100})
    assert r.status_code == 200, r.text
    via = statistics.median(tcp_bulk(host_address, 8777, args.tcp_mb) for _ in range(3))
    direct = statistics.median(tcp_bulk(ip, 9100, args.tcp_mb) for _ in range(3))
    print(f"ingress TCP {args.tcp_mb} MB via 8777 (nftables DNAT): {via:.0f} MB/s; direct: "
          f"{direct:.0f} MB/s; ratio {via / direct:.2f}")


if __name__ == "__main__":
    main()
