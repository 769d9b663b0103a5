"""Running playbooks/site.yml from tests: the test inventory, the wheels it ships, the runner, its results."""
from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import testhost

REPO = Path(__file__).resolve().parents[2]
TIMINGS: dict[str, float] = {}


# What the test inventory sets, so tests can check it arrived on the host.
INVENTORY_VARS = {
    # The test host carries its packages and has no mirror, no PyPI.
    "appliance_packages_update_cache": False,
    "appliance_image_build": False,
    "appliance_config_public_host": "cloud.install-test.example",
    "appliance_config_compute_domain": "apps.install-test.example",
    "appliance_config_http_port": 8080,
    "appliance_config_ssh_port": 2222,
    "appliance_config_max_containers_per_user": 5,
    "appliance_config_extra": {"login_max_failures": 7},
    # Files on SeaweedFS (role appliance_seaweedfs): on a host alone on loopback, in the cluster
    # three masters, a volume server and a filer per host.
    "appliance_storage_backend": "seaweedfs",
    "appliance_admin_username": "operator",
    "appliance_admin_display_name": "Install Test Operator",
    # In a real inventory this comes from ansible-vault.
    "appliance_admin_password": "install-test-Passw0rd",
}

# Where the playbook puts the API's certificate and key on the host.
TLS_CERT = "/etc/appliance/tls/api.crt"
TLS_KEY = "/etc/appliance/tls/api.key"

RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)", re.M)


@dataclass
class PlaybookRun:
    args: list[str]
    returncode: int
    output: str
    seconds: float
    recap: dict = field(default_factory=dict)

    @property
    def changed_tasks(self) -> list[str]:
        """Names of the tasks that reported `changed`, from the default callback's output."""
        names, task = [], None
        for line in self.output.splitlines():
            m = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.*)\]", line)
            if m:
                task = m.group(1)
            elif line.startswith("changed:") and task not in names:
                names.append(task)
        return names

    def explain(self) -> str:
        tail = "\n".join(self.output.splitlines()[-60:])
        return f"ansible-playbook {' '.join(self.args)} -> rc={self.returncode}\n{tail}"


def tool(name: str) -> str:
    """An executable from the active venv (where setup.cfg's test extra puts Ansible), else PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: install the test extra (pip install -e '.[test]')")
    return found


def ansible_env() -> dict:
    env = dict(os.environ)
    env.update({
        "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    })
    return env


TOOLS = ("debootstrap", "unshare", "ip", "ssh", "ssh-keygen")


def need_root_and_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("the install test needs root (network namespaces, debootstrap, mounts)")
    for cmd in TOOLS:
        if not shutil.which(cmd):
            pytest.fail(f"{cmd} missing: run scripts/install-deps.sh")


def can_run() -> bool:
    """What need_root_and_tools() asks, as a yes or no (no skip, no failure)."""
    return (os.geteuid() == 0 and all(shutil.which(cmd) for cmd in TOOLS)
            and bool((Path(sys.executable).parent / "ansible-playbook").exists() or shutil.which("ansible-playbook")))


# A run that takes longer has hung. Generous: beside the rest of the suite the runs get
# only the CPU it leaves idle (testhost.to_background_cpu); the cluster's first run took
# 791 s so in a clean-clone run at load ~12, where it takes ~240 s alone.
PLAYBOOK_TIMEOUT = 2400

# Set when the session ends (background.py): a run not begun yet is not begun, and
# the runs under way (their processes here) are ended.
ABANDONED = threading.Event()
_running: set[subprocess.Popen] = set()


def end_playbooks() -> None:
    ABANDONED.set()
    for proc in list(_running):
        proc.terminate()


def run_playbook(inventory: Path, *extra: str, label: str) -> PlaybookRun:
    if ABANDONED.is_set():
        raise RuntimeError(f"session over: playbook {label!r} not run")
    args = ["-i", str(inventory), str(REPO / "playbooks/site.yml"), *extra]
    log_path = inventory.parent / f"playbook-{label.replace(' ', '-')}.log"
    started = time.monotonic()
    # Into a file, not a pipe: this process holds no descriptor of the run while the
    # rest of the suite runs beside it (tests/unit/test_filer_client.py counts them).
    with open(log_path, "w") as out:
        proc = subprocess.Popen([tool("ansible-playbook"), *args], cwd=REPO, env=ansible_env(),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    _running.add(proc)
    testhost.to_background_cpu(proc.pid)   # while Ansible still imports, before any fork
    try:
        proc.wait(timeout=PLAYBOOK_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    finally:
        _running.discard(proc)
    seconds = time.monotonic() - started
    TIMINGS[f"playbook: {label}"] = seconds
    output = log_path.read_text()
    recap = {m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host"}
             for m in RECAP.finditer(output)}
    return PlaybookRun(args, proc.returncode, output, seconds, recap)


def wheelhouse(repo: Path) -> Path:
    """Wheels for every dependency of `appliance[server,compute]`, built on this machine.

    The test host cannot reach PyPI, so the playbook ships these and installs
    with --no-index. This machine is the same platform as the host (Debian
    12, Python 3.11), so compiled wheels (libvirt-python) fit.
    """
    cfg = configparser.ConfigParser()
    cfg.read(repo / "setup.cfg")
    reqs = [r.strip() for r in cfg["options"]["install_requires"].splitlines() if r.strip()]
    for extra in ("server", "compute", "postgres", "seaweedfs"):   # the playbook's extras (seaweedfs: the cluster test)
        reqs += [r.strip() for r in cfg["options.extras_require"][extra].splitlines() if r.strip()]
    key = hashlib.sha256(json.dumps([testhost.RECIPE, sys.version_info[:2], sorted(reqs)]).encode()).hexdigest()[:16]
    path = testhost.CACHE_DIR / f"wheelhouse-{key}"
    with testhost.locked(testhost.CACHE_DIR / ".wheelhouse.lock"):
        if not (path / ".complete").exists():
            started = time.monotonic()
            tmp = path.with_name(path.name + ".partial")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            testhost.log(f"building {path} ({len(reqs)} requirements)")
            (tmp / "requirements.txt").write_text("\n".join(reqs) + "\n")
            with open(testhost.CACHE_DIR / f"{path.name}.build.log", "w") as out:
                testhost.run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check",
                     "--wheel-dir", str(tmp), "-r", str(tmp / "requirements.txt")],
                    stdout=out, stderr=subprocess.STDOUT)
            (tmp / ".complete").write_text("\n".join(reqs) + "\n")
            tmp.rename(path)
            testhost.log(f"built {path} in {time.monotonic() - started:.0f} s")
    return path
