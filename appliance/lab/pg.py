"""The lab's one PostgreSQL (Debian's postgresql package): a private cluster
under the lab directory, run as the postgres user, on a Unix socket only
(every lab host sees the directory; nothing listens on TCP)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from appliance.lab.topology import LAB_DIR, PG_PORT

PG_DIR = LAB_DIR / "postgresql"
SOCKET_DIR = PG_DIR / "sock"
DATA = PG_DIR / "data"


class LabDatabaseError(RuntimeError):
    pass


def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not found:
        raise LabDatabaseError("Debian's postgresql package is needed: run scripts/install-deps.sh")
    return found[-1]


def url() -> str:
    return f"postgresql://postgres@/appliance?host={SOCKET_DIR}&port={PG_PORT}"


def _as_postgres(*argv: str) -> None:
    proc = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise LabDatabaseError(f"{' '.join(argv)}: {(proc.stderr or proc.stdout).strip()}")


def start() -> str:
    """initdb + start + createdb; returns the appliance's db_url."""
    SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    for path in (PG_DIR, SOCKET_DIR):
        shutil.chown(path, "postgres")
    os.chmod(PG_DIR, 0o755)
    binaries = pg_bin()
    if not (DATA / "PG_VERSION").exists():
        _as_postgres(str(binaries / "initdb"), "-D", str(DATA), "-A", "trust", "-U", "postgres")
    _as_postgres(str(binaries / "pg_ctl"), "-D", str(DATA), "-w", "-l", str(PG_DIR / "pg.log"),
                 "-o", f"-k {SOCKET_DIR} -c listen_addresses='' -p {PG_PORT} -c max_connections=300", "start")
    _as_postgres(str(binaries / "createdb"), "-h", str(SOCKET_DIR), "-p", str(PG_PORT), "appliance")
    return url()


def running() -> bool:
    return (DATA / "postmaster.pid").exists()


def stop() -> bool:
    if not running():
        return False
    _as_postgres(str(pg_bin() / "pg_ctl"), "-D", str(DATA), "-m", "fast", "-w", "stop")
    return True
