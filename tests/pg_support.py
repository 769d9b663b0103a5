"""A private PostgreSQL cluster for tests (Debian's postgresql package):
in a temp dir, on a Unix socket only, as the postgres user; nothing listens
on TCP. Needs root. ``postgres``: a module fixture giving its peewee URL;
``private_postgres()``: the same as a context manager (benchmarks)."""
import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None) \
    if Path("/usr/lib/postgresql").exists() else None

# for the modules using the fixture
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="runs a private PostgreSQL cluster as the "
                                                          "postgres user: needs root")


def _as_postgres(*argv, **kw):
    return subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True,
                          capture_output=True, text=True, timeout=120, **kw)


@contextlib.contextmanager
def private_postgres(port: int = 5499):
    """A fresh PostgreSQL cluster with an ``appliance`` database; yields its peewee URL."""
    if PG_BIN is None:
        raise RuntimeError("Debian's postgresql package is needed: run scripts/install-deps.sh")
    # Not under pytest's tmp dir: that is root's 0700 tree, closed to postgres.
    root = Path(tempfile.mkdtemp(prefix="appliance-pg-", dir="/var/tmp"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    shutil.chown(root, "postgres")
    shutil.chown(sock, "postgres")
    os.chmod(root, 0o755)
    _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "pg.log"),
                 "-o", f"-k {sock} -c listen_addresses='' -p {port}", "start")
    try:
        _as_postgres(str(PG_BIN / "createdb"), "-h", str(sock), "-p", str(port), "appliance")
        yield f"postgresql://postgres@/appliance?host={sock}&port={port}"
    finally:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root)


@pytest.fixture(scope="module")
def postgres():
    if PG_BIN is None:
        pytest.fail("Debian's postgresql package is needed: run scripts/install-deps.sh")
    with private_postgres() as url:
        yield url
