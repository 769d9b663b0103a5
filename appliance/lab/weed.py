"""The lab's SeaweedFS (docs/seaweedfs-ansible.md "make lab"): what the playbook
installs on a real cluster, in the lab's hosts.

Each lab host runs, in its own network namespace and bound to its LAN address
alone, a master (three: a Raft quorum, so one host may die), a volume server
whose rack is the host's name (replication 010 puts the second copy on another
host) and a filer. The filers keep their metadata in the lab's PostgreSQL
(schema ``seaweedfs`` of the appliance database, over its Unix socket), so any
host's filer sees every file. The processes are appliance/host/seaweedfs.py's
WeedProcess, started through ``ip netns exec``; their pid files let ``down``,
``kill-host`` and ``restart-host`` find them from any later command.
"""
from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg2

from appliance.host import seaweedfs
from appliance.lab import pg
from appliance.lab.topology import HOSTS, LAB_DIR, PG_PORT, LabHost

WEED_DIR = LAB_DIR / "seaweedfs"
CONF_DIR = WEED_DIR / "conf"
JWT_KEY_FILE = WEED_DIR / "jwt_key"
REPLICATION = "010"
SCHEMA = "seaweedfs"
# The playbook's ports (role appliance_seaweedfs): HTTP, gRPC.
PORTS = {"master": (9333, 19333), "volume": (9380, 19380), "filer": (9888, 19888)}
MEMORY_LIMIT_MB = 256
VOLUME_SIZE_LIMIT_MB = 256
MAX_VOLUMES = 32


class LabProcess(seaweedfs.WeedProcess):
    """A weed server inside a lab host's network namespace."""

    def __init__(self, netns: str, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.netns = netns

    def argv(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *super().argv()]   # (ip execs: the pid is weed's)


def masters() -> list[str]:
    """The masters' HTTP addresses (the appliance's seaweedfs_master)."""
    return [f"{h.lan_ip}:{PORTS['master'][0]}" for h in HOSTS]


def _masters_grpc() -> str:
    return ",".join(f"{m}.{PORTS['master'][1]}" for m in masters())


def filer_url(h: LabHost) -> str:
    return f"http://{h.lan_ip}:{PORTS['filer'][0]}"


def settings(h: LabHost) -> dict:
    """The appliance's settings for host *h* (its own filer, the three masters)."""
    return {"storage_backend": "seaweedfs", "seaweedfs_filer": filer_url(h),
            "seaweedfs_master": ",".join(masters()), "seaweedfs_replication": REPLICATION,
            "seaweedfs_jwt_key_file": str(JWT_KEY_FILE), "seaweedfs_embedded": False}


def filer_toml() -> str:
    """postgres2 on the lab's PostgreSQL socket (keys of weed 4.48's `scaffold -config=filer`)."""
    return f'''[postgres2]
enabled = true
createTable = """
  CREATE TABLE IF NOT EXISTS "%s" (
    dirhash BIGINT, name VARCHAR(65535), directory VARCHAR(65535), meta bytea,
    PRIMARY KEY (dirhash, name));
"""
hostname = "{pg.SOCKET_DIR}"
port = {PG_PORT}
username = "postgres"
password = ""
database = "appliance"
schema = "{SCHEMA}"
sslmode = "disable"
connection_max_idle = 4
connection_max_open = 10
connection_max_lifetime_seconds = 300
enableUpsert = true
upsertQuery = """
  INSERT INTO "%[1]s" (dirhash, name, directory, meta) VALUES($1, $2, $3, $4)
    ON CONFLICT (dirhash, name) DO UPDATE SET directory=EXCLUDED.directory, meta=EXCLUDED.meta
"""
'''


def processes(h: LabHost) -> list[LabProcess]:
    """Host *h*'s master, volume server and filer (started or not)."""
    root = WEED_DIR / h.name
    env = {"GOMEMLIMIT": f"{MEMORY_LIMIT_MB}MiB"}
    peers = _masters_grpc()
    args = {
        "master": [f"-mdir={root / 'master'}", f"-peers={peers}", f"-volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
                   f"-defaultReplication={REPLICATION}", "-telemetry=false"],
        "volume": [f"-dir={root / 'volume'}", f"-max={MAX_VOLUMES}", f"-rack={h.name}", f"-master={peers}",
                   f"-preStopSeconds={seaweedfs.PRE_STOP_SECONDS}"],
        "filer": [f"-master={peers}", f"-defaultStoreDir={root / 'filer'}",
                  f"-defaultReplicaPlacement={REPLICATION}", f"-localSocket=/tmp/lab-weed-filer-{h.number}.sock"],
    }
    return [LabProcess(h.netns, f"{kind}-{h.name}", kind, h.lan_ip, *PORTS[kind], root / kind, args[kind],
                       CONF_DIR, env, root / f"{kind}.log", None, root / f"{kind}.pid")
            for kind in ("master", "volume", "filer")]


def _create_schema() -> None:
    conn = psycopg2.connect(pg.url())
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"')
    finally:
        conn.close()


def _answers(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.read()
    except (OSError, urllib.error.HTTPError):
        return None


def _leader() -> bool:
    """Some master answers with a leader (the others may be gone)."""
    for master in masters():
        body = _answers(f"http://{master}/cluster/status")
        try:
            if body is not None and json.loads(body).get("Leader"):
                return True
        except ValueError:
            pass
    return False


def _registered(hosts: tuple[LabHost, ...]) -> bool:
    wanted = {f"{h.lan_ip}:{PORTS['volume'][0]}" for h in hosts}
    for master in masters():
        body = _answers(f"http://{master}/dir/status")
        if body is not None and all(address.encode() in body for address in wanted):
            return True
    return False


def _wait(what: str, ready, deadline: float) -> None:
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}; see {WEED_DIR}")
        time.sleep(0.2)


def _private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def start(hosts: tuple[LabHost, ...] = HOSTS, timeout: float = 90.0) -> None:
    """The SeaweedFS of *hosts* (all: `make lab`; one: `restart-host`), until each filer is healthy."""
    CONF_DIR.mkdir(parents=True, exist_ok=True)
    key = seaweedfs.ensure_jwt_key(JWT_KEY_FILE)
    _private(CONF_DIR / "security.toml", seaweedfs.security_toml(key))
    _private(CONF_DIR / "filer.toml", filer_toml())
    _create_schema()
    deadline = time.monotonic() + timeout
    for h in hosts:
        processes(h)[0].start()
    _wait("no SeaweedFS master leads", _leader, deadline)
    for h in hosts:
        processes(h)[1].start()
    _wait("the volume servers did not register", lambda: _registered(hosts), deadline)
    # One filer at a time: a filer starting exits when a peer filer it copies from is not up yet.
    for h in hosts:
        filer = processes(h)[2]
        filer.start()
        _wait(f"the filer of {h.name} is not healthy", lambda f=filer: _answers(f"{f.url}/healthz") is not None,
              deadline)


def stop(hosts: tuple[LabHost, ...] = HOSTS) -> list[str]:
    """Filers, then volume servers, then masters of *hosts* (each kind together); the names that ran."""
    ran = []
    for kind in (2, 1, 0):
        signalled = [(p, p.signal(signal.SIGTERM)) for p in (processes(h)[kind] for h in hosts)]
        for process, pid in signalled:
            if pid is not None:
                process.wait_exit(pid)
                ran.append(process.name)
    return ran
