"""`appliance up` with storage_backend = "seaweedfs": the embedded SeaweedFS set
(appliance/host/seaweedfs_embedded.py) on loopback, found by the daemons, stopped by `down`."""
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import requests
from harness import free_port
from seaweed_support import listening

from appliance.host.seaweedfs import filer_jwt

WEED = ("master", "volume", "filer")


def _run(env, *args):
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def _weed_pids(data: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in (data / "run").glob("weed-*.pid")}


def test_up_starts_an_embedded_seaweedfs_on_loopback_and_down_stops_it(tmp_path):
    data = tmp_path / "up"
    port = free_port()
    env = {**os.environ, "APPLIANCE_CONFIG": "/dev/null", "APPLIANCE_DATA_DIR": str(data),
           "APPLIANCE_HTTP_PORT": str(port), "APPLIANCE_SSH_PORT": str(free_port()),
           "APPLIANCE_GUEST_DRIVER": "fake", "APPLIANCE_STORAGE_BACKEND": "seaweedfs"}
    env.pop("APPLIANCE_ADMIN_PASSWORD", None)
    started = time.monotonic()
    up = _run(env, "up")
    up_seconds = time.monotonic() - started
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).text == "ok"
        pids = _weed_pids(data)
        assert sorted(pids) == ["weed-filer", "weed-master", f"weed-volume-{_rack(pids)}"], pids
        for name, pid in pids.items():
            bound = listening(pid)
            assert len(bound) >= 2 and {ip for ip, _ in bound} == {"127.0.0.1"}, (name, bound)
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert any(v.startswith(b"GOMEMLIMIT=") for v in environ), name
        key_file = data / "seaweedfs_jwt_key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        logs = {p.name for p in (data / "log").glob("weed-*.log")}
        assert logs == {f"{n}.log" for n in pids}, logs

        # The core was told where the filer is and which key it takes.
        core_pid = int((data / "run" / "core.pid").read_text())
        core_env = dict(v.split(b"=", 1) for v in Path(f"/proc/{core_pid}/environ").read_bytes().split(b"\0") if v)
        filer = core_env[b"APPLIANCE_SEAWEEDFS_FILER"].decode()
        assert filer.startswith("http://127.0.0.1:")
        assert core_env[b"APPLIANCE_SEAWEEDFS_MASTER"].decode().startswith("127.0.0.1:")
        assert core_env[b"APPLIANCE_SEAWEEDFS_JWT_KEY_FILE"] == str(key_file).encode()
        assert core_env[b"APPLIANCE_SEAWEEDFS_REPLICATION"] == b"000"
        auth = {"Authorization": "Bearer " + filer_jwt(key_file.read_text().strip())}
        assert requests.put(f"{filer}/appliance/probe", data=b"hi", timeout=10).status_code == 401
        assert requests.put(f"{filer}/appliance/probe", data=b"hi", headers=auth, timeout=30).status_code == 201
        assert requests.get(f"{filer}/appliance/probe", headers=auth, timeout=10).content == b"hi"

        # A second `up` finds them running: same processes, same key.
        key = key_file.read_text()
        again = _run(env, "up")
        assert again.returncode == 0, again.stderr
        assert _weed_pids(data) == pids and key_file.read_text() == key
        status = _run(env, "status").stdout
        assert all(f"{name}: running (pid {pid}" in status for name, pid in pids.items()), status
    finally:
        down = _run(env, "down")
    assert down.returncode == 0, down.stderr
    assert all(name in down.stdout for name in pids), down.stdout
    assert all(_gone(pid) for pid in pids.values()), pids
    assert _weed_pids(data) == {}
    assert "weed-filer: stopped" in _run(env, "status").stdout
    print(f"appliance up with SeaweedFS: {up_seconds:.1f} s")


def _gone(pid: int) -> bool:
    """Exited (a zombie of the init process counts: `up` has exited, nobody waits for it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _rack(pids: dict[str, int]) -> str:
    return next(n for n in pids if n.startswith("weed-volume-")).removeprefix("weed-volume-")
