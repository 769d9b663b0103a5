"""`make lab` (``python -m appliance.lab up``) and `make lab-down` (``down``)."""
from __future__ import annotations

import concurrent.futures
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from appliance import config as config_mod
from appliance import gatewaykeys, supervise
from appliance.core.compute import hostprep
from appliance.host import image
from appliance.lab import certs, hostns, netns, outage, pg, weed
from appliance.lab.hostns import appliance
from appliance.lab.topology import (
    HOSTS,
    HTTP_PORT,
    INGRESS_HTTP_PORT,
    INGRESS_HTTPS_PORT,
    LAB_DIR,
    SSH_PORT,
    LabHost,
)

STATE = LAB_DIR / "lab.json"


class LabError(RuntimeError):
    pass


def settings(h: LabHost, db_url: str) -> dict:
    tls = LAB_DIR / "tls"
    return {
        "data_dir": str(h.data_dir), "host_name": h.name, "db_url": db_url,
        "http_host": h.lan_ip, "http_port": HTTP_PORT, "public_host": h.lan_ip,
        "ssh_listen": h.lan_ip, "ssh_port": SSH_PORT,
        "ingress_listen": h.lan_ip, "ingress_http_port": INGRESS_HTTP_PORT,
        "ingress_https_port": INGRESS_HTTPS_PORT,
        "bridge_name": h.bridge, "guest_subnet": h.guest_subnet,
        "cluster_listen": h.cluster_address, "cluster_ca_file": str(tls / certs.CA_CERT),
        "cluster_cert_file": str(h.dir / "tls" / "cluster.crt"),
        "cluster_key_file": str(h.dir / "tls" / "cluster.key"),
        **weed.settings(h),   # files on the lab's SeaweedFS (appliance/lab/weed.py)
    }


def write_config(h: LabHost, values: dict) -> None:
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]  # JSON strings/ints are TOML too
    h.config_file.write_text("\n".join(lines) + "\n")


def _private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def share_secrets(password: str) -> None:
    """The same JWT secret, SSH gateway guest access key and admin password file in every data dir."""
    first = config_mod.load(HOSTS[0].config_file, env={})
    supervise.private_data_dir(first)
    access_key = gatewaykeys.private_key_pem(first, gatewaykeys.GUEST_ACCESS_KEY)
    jwt = (secrets.token_urlsafe(32) + "\n").encode()
    for h in HOSTS:
        supervise.private_data_dir(config_mod.load(h.config_file, env={}))
        _private(h.data_dir / "jwt_secret", jwt)
        _private(h.data_dir / "ssh" / gatewaykeys.GUEST_ACCESS_KEY, access_key)
        _private(h.data_dir / "admin_password", (password + "\n").encode())


def up() -> int:
    if STATE.exists() or netns.namespaces() & {h.netns for h in HOSTS}:
        print("the lab is (partly) up already: run `make lab-down` first", file=sys.stderr)
        return 1
    started = time.monotonic()
    password = os.environ.get("APPLIANCE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    try:   # here, where the mirror is reachable: the hosts' namespaces cannot build it, they share it
        image.ensure_image(config_mod.Config().image_dir)
    except (OSError, image.ImageBuildError) as e:
        print(f"lab: the guest image could not be built: {e}", file=sys.stderr)
        return 1
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(LAB_DIR, 0o755)   # the postgres user reaches its directory through it
    STATE.write_text(json.dumps({"started": time.time()}))
    try:
        netns.create_lan()
        for h in HOSTS:
            h.dir.mkdir(parents=True, exist_ok=True)
            netns.create_host(h)
        db_url = pg.start()
        certs.make_ca(LAB_DIR / "tls")
        holders = {}
        for h in HOSTS:
            certs.make_host_cert(LAB_DIR / "tls", h.name, h.lan_ip, h.dir / "tls")
            write_config(h, settings(h, db_url))
            holders[h.name] = hostns.start_holder(h, h.dir / "holder.log")
        share_secrets(password)
        weed.start()
        for h in HOSTS:
            hostns.wait_libvirtd(h, holders[h.name])
        env = {"APPLIANCE_ADMIN_PASSWORD": password}
        # the first host creates the schema and the admin; the others then start side by side
        _check(HOSTS[0], appliance(HOSTS[0], holders[HOSTS[0].name], "up", env))
        with concurrent.futures.ThreadPoolExecutor(len(HOSTS)) as pool:
            for h, result in zip(HOSTS[1:], pool.map(lambda h: appliance(h, holders[h.name], "up", env),
                                                     HOSTS[1:]), strict=True):
                _check(h, result)
    except Exception as e:  # noqa: BLE001 - whatever failed, leave nothing half up
        print(f"lab: {e}", file=sys.stderr)
        down(quiet=True)
        return 1
    STATE.write_text(json.dumps({"started": time.time(), "seconds": round(time.monotonic() - started, 2),
                                 "holders": holders}))
    for h in HOSTS:
        print(f"lab host {h.name} api={h.api} ssh={h.lan_ip}:{SSH_PORT}")
    print(f"admin: admin / {password}")
    print(f"(up in {time.monotonic() - started:.1f} s; `make lab-down` removes it)")
    return 0


def _check(h: LabHost, result: subprocess.CompletedProcess) -> None:
    # `appliance up` goes on without compute when the host cannot run guests; a lab host must
    if result.returncode != 0 or hostprep.FAILED in result.stderr:
        raise LabError(f"{h.name}: appliance up failed:\n{result.stdout}{result.stderr}")


def _stop_host(h: LabHost) -> str | None:
    holder = hostns.holder_pid(h)
    if holder is not None:
        appliance(h, holder, "down")
        libvirtd = hostns.libvirtd_pid(holder)
        if libvirtd is not None:
            hostns.terminate(libvirtd)
        hostns.terminate(holder)
        return f"{h.name} (daemons, guests, libvirtd)"
    if h.config_file.exists():   # the holder is gone: stop the daemons by their pid files
        cfg = config_mod.load(h.config_file, env={})
        if any([supervise.stop(cfg, name) for name in reversed(supervise.SERVICES)]):
            return f"{h.name} daemons"
    return None


def _kill_leftovers(h: LabHost) -> str | None:
    """Whatever still runs in the host's namespace once its daemons and SeaweedFS servers
    were stopped (what `appliance down` missed: a CI run once left two forked copies of a
    core, stuck in idmap.userns_fd) ends as a power cut ends it."""
    try:
        left = outage.kill_host(h)
    except FileNotFoundError:   # no namespace: nothing of the host can run
        return None
    except outage.OutageError as e:
        print(f"lab: {e}", file=sys.stderr)
        return None
    return f"{h.name}: {len(left)} process(es) left, killed" if left else None


def down(quiet: bool = False) -> int:
    with concurrent.futures.ThreadPoolExecutor(len(HOSTS)) as pool:
        done = [d for d in pool.map(_stop_host, HOSTS) if d]
    done += [f"weed {name}" for name in weed.stop()]
    done += [d for d in map(_kill_leftovers, HOSTS) if d]
    done += [f"netns {n}" for n in netns.remove_all()]
    try:
        if pg.stop():
            done.append("postgresql")
    except pg.LabDatabaseError as e:
        print(f"lab: {e}", file=sys.stderr)
    if LAB_DIR.exists():
        shutil.rmtree(LAB_DIR, ignore_errors=True)
        done.append(str(LAB_DIR))
    if not quiet:
        print("lab removed: " + (", ".join(done) if done else "nothing was there"))
    return 0


def main(argv: list[str]) -> int:
    if os.geteuid() != 0:
        print("the lab needs root (namespaces, libvirtd, nftables)", file=sys.stderr)
        return 2
    from appliance.lab import usage
    commands = {"up": up, "down": down, "status": usage.report}
    if len(argv) == 2 and argv[0] in ("kill-host", "restart-host"):
        return host_command(argv[0], argv[1])
    if len(argv) != 1 or argv[0] not in commands:
        print("usage: python -m appliance.lab up|down|status|kill-host NAME|restart-host NAME", file=sys.stderr)
        return 2
    return commands[argv[0]]()


def host_command(command: str, name: str) -> int:
    """kill -9 of every process of one lab host, or starting it again (appliance/lab/outage.py)."""
    from appliance.lab import outage, topology
    try:
        h = topology.host(name)
    except KeyError:
        print(f"no lab host {name!r} (one of: {', '.join(x.name for x in HOSTS)})", file=sys.stderr)
        return 2
    try:
        if command == "kill-host":
            print(f"{h.name}: killed {len(outage.kill_host(h))} processes")
        else:
            print(f"{h.name}: up again (holder {outage.restart_host(h)})")
    except (OSError, outage.OutageError, hostns.LabHostError) as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1
    return 0
