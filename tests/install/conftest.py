"""Fixtures for the install test: a throwaway host converged by playbooks/site.yml
(and three of them made one cluster: clusterrun.py).

The fixture `converged` does the expensive part once: start the test host
(testhost.py), run the playbook in --check mode on the fresh host, for real
twice (the API's TLS certificate generated on the host), in --check mode
again, then once more with a certificate and key from the inventory, and
keeps every result for the tests to judge. That work, and the cluster's
(clusterrun.py), runs in threads begun when the session starts, beside the
rest of the suite; the modules that judge it run last (background.py).
Timings are printed at the end of the session.
"""
from __future__ import annotations

import os
import shutil
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import testhost  # noqa: E402
import tlscert  # noqa: E402
from background import JOBS  # noqa: E402
from clusterrun import build_cluster, cluster  # noqa: E402,F401  (a fixture)
from installrun import (  # noqa: E402
    ABANDONED,
    INVENTORY_VARS,
    REPO,
    TIMINGS,
    TLS_CERT,
    PlaybookRun,
    can_run,
    need_root_and_tools,
    run_playbook,
    wheelhouse,
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "install: runs playbooks/site.yml against a throwaway host (root, minutes)")


def _jobs(item) -> list[str]:
    """The background jobs (fixtures of the same name) a test here judges."""
    if HERE not in item.path.parents:
        return []   # other directories have fixtures named `cluster` too
    return [name for name in JOB_FIXTURES if name in item.fixturenames]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The tests of the hosts run last, when their playbook runs are (nearly) done."""
    late = [item for item in items if _jobs(item)]
    items[:] = [item for item in items if not _jobs(item)] + late


def pytest_collection_finish(session):
    """Begin the jobs the session's tests need, and let their hosts boot before any test runs."""
    wanted = sorted({name for item in session.items for name in _jobs(item)})
    if session.config.option.collectonly or not wanted or not can_run():
        return   # without root or the tools, the fixtures skip or fail and say why
    for name in wanted:
        JOBS.start(name, JOB_FIXTURES[name])
    JOBS.wait_up()


def pytest_sessionfinish():
    JOBS.end()


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section("install test timings")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name:<40} {seconds:7.1f} s")


@dataclass
class Converged:
    host: testhost.TestHost
    inventory: Path
    source: Path  # the snapshot of the checkout that was deployed
    check_fresh: PlaybookRun
    first: PlaybookRun
    second: PlaybookRun
    check_after: PlaybookRun
    secrets_after_first: str
    secrets_after_second: str
    generated_cert: str  # the certificate the first run generated on the host (PEM)
    served_after_first: str | None  # what the API served then (PEM; None without systemd)
    configured: PlaybookRun  # a last run with a certificate and key from the inventory
    configured_cert: str

    def close(self) -> None:
        self.host.close()


SNAPSHOT_SKIP = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".state")
SECRETS = ("sha256sum /var/lib/appliance/jwt_secret /var/lib/appliance/install-test-marker "
           "/etc/appliance/tls/api.crt /etc/appliance/tls/api.key")


def start_host(root: Path) -> testhost.TestHost:
    """A booted systemd host if systemd-nspawn can boot one here, else the offline host."""
    mode = os.environ.get("APPLIANCE_TESTHOST_MODE") or (
        "systemd" if shutil.which("systemd-nspawn") else "offline")
    if mode == "systemd":
        host = testhost.TestHost(root, mode="systemd")
        try:
            return host.__enter__()
        except RuntimeError as e:
            testhost.log(f"systemd-nspawn could not boot the host, falling back to offline: {e}")
    return testhost.TestHost(root, mode="offline").__enter__()


def served_certificate(host: testhost.TestHost, timeout: float = 60) -> str | None:
    """The certificate the host's API port presents (PEM), once it answers TLS."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not ABANDONED.is_set():
        try:
            return ssl.get_server_certificate((host.address, 8080), timeout=2)
        except OSError:
            time.sleep(0.5)
    return None


def converge(up: threading.Event) -> Converged:
    """Start the host (then set *up*) and run the playbook on it (the runs the tests
    judge); the host stays up. In a thread (background.py)."""
    try:
        started = time.monotonic()
        root = testhost.rootfs(REPO)
        wheels = wheelhouse(REPO)
        TIMINGS["test host root + wheelhouse (cache)"] = time.monotonic() - started
        started = time.monotonic()
        host = start_host(root)
    finally:
        up.set()
    try:
        TIMINGS["test host start"] = time.monotonic() - started
        # Deploy a snapshot of the checkout, so edits made while the test runs
        # cannot make the second run differ from the first.
        source = host.workdir / "checkout"
        shutil.copytree(REPO, source, ignore=SNAPSHOT_SKIP, symlinks=True)
        inventory = host.inventory({**INVENTORY_VARS, "appliance_venv_wheelhouse": str(wheels),
                                    "appliance_venv_source_dir": str(source)})
        check_fresh = run_playbook(inventory, "--check", label="check on fresh host")
        first = run_playbook(inventory, label="first run")
        generated_cert = host.ssh(f"cat {TLS_CERT}", check=False).stdout
        served_after_first = served_certificate(host) if host.mode == "systemd" else None
        # Data an operator would not want to lose, planted before the rerun.
        host.ssh("mkdir -p /var/lib/appliance && echo keep-me > /var/lib/appliance/install-test-marker")
        secrets_after_first = host.ssh(SECRETS, check=False).stdout
        second = run_playbook(inventory, label="second run")
        secrets_after_second = host.ssh(SECRETS, check=False).stdout
        check_after = run_playbook(inventory, "--check", label="check after install")
        # The operator's own certificate (valid for the public name and, so the
        # tests can verify it when connecting by address, the host's address).
        cert, key = tlscert.make_cert(host.workdir / "tls", [
            INVENTORY_VARS["appliance_config_public_host"], host.address], stem="configured")
        inventory = host.inventory({**INVENTORY_VARS, "appliance_venv_wheelhouse": str(wheels),
                                    "appliance_venv_source_dir": str(source),
                                    "appliance_tls_certificate": cert.read_text(),
                                    "appliance_tls_private_key": key.read_text()})
        configured = run_playbook(inventory, label="configured certificate")
    except BaseException:
        host.close()
        raise
    return Converged(host, inventory, source, check_fresh, first, second, check_after,
                     secrets_after_first, secrets_after_second, generated_cert, served_after_first,
                     configured, cert.read_text())


JOB_FIXTURES = {"cluster": build_cluster, "converged": converge}


# Module scope: the host and its daemons are gone once test_install.py is done.
@pytest.fixture(scope="module")
def converged():
    need_root_and_tools()
    with JOBS.taken("converged", converge) as result:
        yield result
