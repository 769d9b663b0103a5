"""Background processes for ``appliance up`` / ``down``: pid files, logs, health wait.

On a host with systemd the playbooks install units instead; this is for
``make up`` on a machine where nothing else supervises the appliance. Each
daemon's output goes through a pipe to its own log writer (appliance/logs.py)
that rotates ``<log_dir>/<daemon>.log``, so the logs stay bounded.
"""
from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from appliance.config import Config

SERVICES = ("core", "http", "ssh")


def pid_file(config: Config, name: str) -> Path:
    return config.run_dir / f"{name}.pid"


def running_pid(config: Config, name: str) -> int | None:
    """The pid from the pid file if that process is still our appliance process."""
    try:
        pid = int(pid_file(config, name).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    if b"appliance.cli" in cmdline and name.encode() in cmdline:
        return pid
    return None


def private_data_dir(config: Config) -> None:
    """The data directory 0750 and what in it holds secrets, accounts or logs
    0600, as the playbook's units leave them (root:appliance 0750, UMask=0027).
    The SQLite file is created here, empty and 0600, before SQLite opens it:
    its -wal and -shm files take the database file's mode."""
    config.data_path.mkdir(mode=0o750, parents=True, exist_ok=True)
    if os.stat(config.data_path).st_uid != os.geteuid():
        return  # not ours to change (e.g. `appliance user list` run by another user)
    config.data_path.chmod(0o750)
    for directory in (config.run_dir, config.log_dir):
        directory.mkdir(mode=0o750, exist_ok=True)
        directory.chmod(0o750)
    private = [config.data_path / n for n in ("jwt_secret", "service_secret", "admin_password")]
    private += config.log_dir.glob("*.log*")
    if config.database_url.startswith("sqlite:///"):
        db = Path(config.database_url[len("sqlite:///"):].split("?", 1)[0])
        try:
            os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        private += [db.with_name(db.name + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
    for path in private:
        try:
            path.chmod(0o600)
        except FileNotFoundError:
            pass


def start(config: Config, name: str, env: dict | None = None) -> int:
    pid = running_pid(config, name)
    if pid:
        return pid
    private_data_dir(config)
    # daemon (and its workers) --pipe--> `python -m appliance.logs` --> <name>.log, rotated
    read_end, write_end = os.pipe()
    try:
        subprocess.Popen(
            [sys.executable, "-m", "appliance.logs", str(config.log_dir / f"{name}.log"),
             str(config.log_file_max_bytes), str(config.log_file_backups)],
            stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, **(env or {})},
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", name],
            stdin=subprocess.DEVNULL, stdout=write_end, stderr=subprocess.STDOUT,
            start_new_session=True, env={**os.environ, **(env or {})},
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    pid_file(config, name).write_text(f"{proc.pid}\n")
    return proc.pid


def stop(config: Config, name: str, timeout: float = 10.0) -> bool:
    pid = running_pid(config, name)
    pid_file(config, name).unlink(missing_ok=True)
    if not pid:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return True
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return True


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_healthy(url: str, timeout: float = 30.0) -> bool:
    # Our own gateway on this host: whatever certificate it has (self-signed,
    # or for a public name that is not the address asked here) is fine.
    context = ssl._create_unverified_context() if url.startswith("https:") else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as reply:
                if reply.status == 200 and reply.read().strip() == b"ok":
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False
