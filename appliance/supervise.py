"""Background processes for ``appliance up`` / ``down``: pid files, logs, health wait.

On a host with systemd the playbooks install units instead; this is for
``make up`` on a machine where nothing else supervises the appliance.
"""
from __future__ import annotations

import os
import signal
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


def start(config: Config, name: str, env: dict | None = None) -> int:
    pid = running_pid(config, name)
    if pid:
        return pid
    config.run_dir.mkdir(parents=True, exist_ok=True)
    config.log_dir.mkdir(parents=True, exist_ok=True)
    log = open(config.log_dir / f"{name}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", name],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, env={**os.environ, **(env or {})},
    )
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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200 and reply.read().strip() == b"ok":
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False
