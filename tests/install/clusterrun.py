"""Three throwaway hosts made one cloud by playbooks/site.yml (the `cluster` fixture).

The hosts share one LAN (testhost.Lan) as a real cluster's hosts do, boot in
parallel from the same cached root filesystem, and are converged by one
playbook run over all three (lab1 also in `appliance_db`), then a second run
that must change nothing, in a thread begun when the session starts
(background.py). test_cluster_install.py judges the results.
"""
from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import testhost
import yaml
from background import JOBS
from installrun import INVENTORY_VARS, REPO, TIMINGS, PlaybookRun, need_root_and_tools, run_playbook, wheelhouse

NAMES = ["lab1", "lab2", "lab3"]
DB_HOST = "lab1"
SNAPSHOT_SKIP = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".state")
# Files every host must hold identically (and the rerun must not touch).
SHARED = ("/var/lib/appliance/jwt_secret /var/lib/appliance/ssh/guest_access_key /etc/appliance/cluster/ca.pem "
          "/var/lib/appliance/seaweedfs_jwt_key /var/lib/appliance/seaweedfs_volume_key "
          "/var/lib/appliance/seaweedfs_volume_read_key")


@dataclass
class Cluster:
    hosts: dict[str, testhost.TestHost]
    lan: testhost.Lan
    inventory: Path
    first: PlaybookRun
    second: PlaybookRun
    shared_after_first: dict[str, str]
    shared_after_second: dict[str, str]

    def close(self) -> None:
        stop_all(self.hosts)
        self.lan.stop()


def cluster_inventory(path: Path, hosts: dict[str, testhost.TestHost], extra: dict) -> Path:
    """The cluster's inventory: every host in `appliance`, lab1 in `appliance_db` too."""
    common = {k: v for k, v in INVENTORY_VARS.items() if k != "appliance_config_public_host"}
    inventory = {
        "appliance": {
            "hosts": {name: {**host.connection_vars(),
                             "appliance_config_public_host": f"{name}.install-test.example"}
                      for name, host in hosts.items()},
            "vars": {**common, **extra},
        },
        "appliance_db": {
            "hosts": {DB_HOST: None},
            # The throwaway hosts carry their packages and reach no mirror.
            "vars": {"appliance_db_update_cache": False},
        },
    }
    path.write_text(yaml.safe_dump(inventory))
    return path


def stop_all(hosts: dict[str, testhost.TestHost]) -> None:
    """Stop the hosts together (each may wait up to 10 s for its cgroups to empty)."""
    if not hosts:
        return
    with ThreadPoolExecutor(len(hosts)) as pool:
        for future in [pool.submit(host.stop) for host in hosts.values()]:
            future.result()


def shared_files(hosts: dict[str, testhost.TestHost]) -> dict[str, str]:
    return {name: host.ssh(f"sha256sum {SHARED}", check=False).stdout for name, host in hosts.items()}


def build_cluster(up: threading.Event) -> Cluster:
    """Boot the three hosts (then set *up*) and run the playbook over them twice; the
    hosts stay up for the tests (Cluster.close stops them). In a thread (background.py)."""
    made: dict[str, testhost.TestHost] = {}
    lan = None
    try:
        started = time.monotonic()
        root = testhost.rootfs(REPO)
        wheels = wheelhouse(REPO)
        TIMINGS["cluster: root + wheelhouse (cache)"] = time.monotonic() - started
        lan = testhost.Lan().start()
        started = time.monotonic()
        made.update({name: testhost.TestHost(root, name=name, mode="systemd", lan=lan, index=i)
                     for i, name in enumerate(NAMES)})
        # Booted in parallel: each waits mostly for its systemd to come up.
        with ThreadPoolExecutor(len(made)) as pool:
            for future in [pool.submit(host.start) for host in made.values()]:
                future.result()
        TIMINGS["cluster: three hosts start"] = time.monotonic() - started
        up.set()
        workdir = made[NAMES[0]].workdir
        source = workdir / "checkout"
        shutil.copytree(REPO, source, ignore=SNAPSHOT_SKIP, symlinks=True)
        inventory = cluster_inventory(workdir / "cluster.yml", made, {
            "appliance_venv_wheelhouse": str(wheels), "appliance_venv_source_dir": str(source)})
        first = run_playbook(inventory, label="cluster: first run")
        shared_after_first = shared_files(made)
        second = run_playbook(inventory, label="cluster: second run")
        shared_after_second = shared_files(made)
        return Cluster(made, lan, inventory, first, second, shared_after_first, shared_after_second)
    except BaseException:
        stop_all(made)
        if lan is not None:
            lan.stop()
        raise
    finally:
        up.set()


# Module scope: the three hosts (their cores heartbeating) are gone once
# test_cluster_install.py is done.
@pytest.fixture(scope="module")
def cluster():
    need_root_and_tools()
    with JOBS.taken("cluster", build_cluster) as result:
        yield result
