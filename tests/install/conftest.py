"""Fixtures for the install test: a throwaway host converged by playbooks/site.yml
(and three of them made one cluster: clusterrun.py).

The fixture `converged` does the expensive part once: start the test host
(testhost.py), run the playbook in --check mode on the fresh host, for real
twice (the API's TLS certificate generated on the host), in --check mode
again, then once more with a certificate and key from the inventory, and
keeps every result for the tests to judge. When the session also runs the
cluster test, that work runs in a thread beside the cluster's (see
`background_converge`). Timings are printed at the end of the session.
"""
from __future__ import annotations

import os
import shutil
import ssl
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import testhost  # noqa: E402
import tlscert  # noqa: E402
from clusterrun import cluster  # noqa: E402,F401  (a fixture)
from installrun import (  # noqa: E402
    INVENTORY_VARS,
    REPO,
    TIMINGS,
    TLS_CERT,
    PlaybookRun,
    need_root_and_tools,
    run_playbook,
    wheelhouse,
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "install: runs playbooks/site.yml against a throwaway host (root, minutes)")


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
    while time.monotonic() < deadline:
        try:
            return ssl.get_server_certificate((host.address, 8080), timeout=2)
        except OSError:
            time.sleep(0.5)
    return None


# Set when the session ends before a background converge() is done (an interrupted run):
# it then stops after the playbook run under way instead of doing the rest.
_abandoned = threading.Event()


def _run(inventory: Path, *extra: str, label: str) -> PlaybookRun:
    if _abandoned.is_set():
        raise RuntimeError(f"session over, playbook {label!r} not run")
    return run_playbook(inventory, *extra, label=label)


def converge() -> Converged:
    """Start the host and run the playbook on it (the runs the tests judge); the host stays up."""
    started = time.monotonic()
    root = testhost.rootfs(REPO)
    wheels = wheelhouse(REPO)
    TIMINGS["test host root + wheelhouse (cache)"] = time.monotonic() - started
    started = time.monotonic()
    host = start_host(root)
    try:
        TIMINGS["test host start"] = time.monotonic() - started
        # Deploy a snapshot of the checkout, so edits made while the test runs
        # cannot make the second run differ from the first.
        source = host.workdir / "checkout"
        shutil.copytree(REPO, source, ignore=SNAPSHOT_SKIP, symlinks=True)
        inventory = host.inventory({**INVENTORY_VARS, "appliance_venv_wheelhouse": str(wheels),
                                    "appliance_venv_source_dir": str(source)})
        check_fresh = _run(inventory, "--check", label="check on fresh host")
        first = _run(inventory, label="first run")
        generated_cert = host.ssh(f"cat {TLS_CERT}", check=False).stdout
        served_after_first = served_certificate(host) if host.mode == "systemd" else None
        # Data an operator would not want to lose, planted before the rerun.
        host.ssh("mkdir -p /var/lib/appliance && echo keep-me > /var/lib/appliance/install-test-marker")
        secrets_after_first = host.ssh(SECRETS, check=False).stdout
        second = _run(inventory, label="second run")
        secrets_after_second = host.ssh(SECRETS, check=False).stdout
        check_after = _run(inventory, "--check", label="check after install")
        # The operator's own certificate (valid for the public name and, so the
        # tests can verify it when connecting by address, the host's address).
        cert, key = tlscert.make_cert(host.workdir / "tls", [
            INVENTORY_VARS["appliance_config_public_host"], host.address], stem="configured")
        inventory = host.inventory({**INVENTORY_VARS, "appliance_venv_wheelhouse": str(wheels),
                                    "appliance_venv_source_dir": str(source),
                                    "appliance_tls_certificate": cert.read_text(),
                                    "appliance_tls_private_key": key.read_text()})
        configured = _run(inventory, label="configured certificate")
    except BaseException:
        host.close()
        raise
    return Converged(host, inventory, source, check_fresh, first, second, check_after,
                     secrets_after_first, secrets_after_second, generated_cert, served_after_first,
                     configured, cert.read_text())


@pytest.fixture(scope="session")
def background_converge():
    """start() -> the Future of converge(), begun at most once per session.

    The cluster fixture starts it beside its own hosts when the session will
    need it: a playbook run keeps about one core busy (the controller, then the
    host, in turn), so on two cores the single host's runs cost little wall
    time next to the cluster's. Whoever takes the result owns the host; one
    never taken is stopped at the end of the session."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="converge")
    futures: list[Future] = []

    def start() -> Future:
        if not futures:
            futures.append(pool.submit(converge))
        return futures[0]

    yield start
    _abandoned.set()
    pool.shutdown(wait=True)
    for future in futures:
        if not future.exception():
            future.result().host.close()   # closing twice is harmless


# Module scope: the host and its daemons are gone once test_install.py is done.
@pytest.fixture(scope="module")
def converged(background_converge):
    need_root_and_tools()
    result = background_converge().result()
    try:
        yield result
    finally:
        result.host.close()
