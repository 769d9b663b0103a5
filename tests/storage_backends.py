"""The storage tests on both blob stores: local disk and SeaweedFS (docs/seaweedfs-store.md).

A storage test module runs its tests once per backend by importing the fixtures
here (``from storage_backends import backend_admin, backend_appliance, seaweed_set_fixture``):
``appliance`` is then a module fixture with params ``local`` (the session's
appliance) and ``seaweedfs`` (the session's appliance on the session's real
SeaweedFS set, both started when first asked for). ``own_apps`` starts
appliances of a test's own on a backend (on the session's SeaweedFS set unless
the module overrides ``seaweed_set``: a test whose appliance sweeps with a
short ``seaweedfs_sweep_seconds`` must not share a set with a live appliance,
whose blobs would be orphans to it).
``blob_names(app)`` is what the backend holds: the files under files/ (local:
blobs and temp files), the filer's blobs (SeaweedFS).
"""
from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from harness import Appliance
from seaweed_support import TestWeedSet, make_set

from appliance.filer import blob_root

BACKENDS = ["local", "seaweedfs"]


def seaweed_settings(weed: TestWeedSet, **settings) -> dict:
    return {"storage_backend": "seaweedfs", "seaweedfs_filer": weed.filer_url,
            "seaweedfs_master": weed.master_address, "seaweedfs_jwt_key_file": str(weed.jwt_key_file),
            "seaweedfs_embedded": "false", "seaweedfs_replication": weed.replication, **settings}


def start_app(data_dir: Path, weed: TestWeedSet | None, **settings) -> Appliance:
    app = Appliance(data_dir, **(seaweed_settings(weed, **settings) if weed is not None else settings))
    app.weed = weed  # type: ignore[attr-defined]
    app.collection = settings.get("seaweedfs_collection", "appliance")  # type: ignore[attr-defined]
    return app.start()


@pytest.fixture(scope="session")
def session_seaweed_set(tmp_path_factory):
    """One SeaweedFS (one volume server) for the storage modules, started when first asked for."""
    weed = make_set(tmp_path_factory.mktemp("weed")).start()
    yield weed
    for process in weed.processes:   # thrown away at the session's end: no clean stop (~2 s)
        process.kill()


@pytest.fixture(scope="session")
def session_seaweed_appliance(session_seaweed_set, tmp_path_factory):
    app = start_app(tmp_path_factory.mktemp("appliance-weed"), session_seaweed_set,
                    login_max_successes_per_address=1_000_000)
    yield app
    app.close()


@pytest.fixture(scope="module", name="seaweed_set")
def seaweed_set_fixture(session_seaweed_set):
    return session_seaweed_set


@pytest.fixture(scope="module", params=BACKENDS, name="appliance")
def backend_appliance(request, tmp_path_factory):
    if request.param == "local":
        app = request.getfixturevalue("session_appliance")
        app.weed = None
        yield app
        return
    yield request.getfixturevalue("session_seaweed_appliance")


@pytest.fixture(scope="module", name="admin")
def backend_admin(appliance):
    return appliance.admin()


@pytest.fixture(name="own_apps")
def own_apps_fixture(tmp_path, request):
    """own_apps(backend, **settings) -> a started appliance of this test's own."""
    apps = []

    def make(backend: str = "local", data_dir: Path | None = None, **settings) -> Appliance:
        weed = request.getfixturevalue("seaweed_set") if backend == "seaweedfs" else None
        app = start_app(data_dir or tmp_path / f"app{len(apps)}", weed, **settings)
        apps.append(app)
        return app
    yield make
    for app in apps:
        app.close()


def _filer_list(weed: TestWeedSet, path: str) -> list[dict]:
    entries, last = [], ""
    while True:
        req = urllib.request.Request(f"{weed.filer_url}{path}/?limit=1000&lastFileName={last}",
                                     headers={"Accept": "application/json", **weed.auth()})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                page = json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return entries
            raise
        entries += page.get("Entries") or []
        if not page.get("ShouldDisplayLoadMore"):
            return entries
        last = page["LastFileName"]


def blob_names(app: Appliance) -> set[str]:
    weed = getattr(app, "weed", None)
    if weed is None:
        root = app.data_dir / "files"
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    names = set()
    for folder in _filer_list(weed, blob_root(getattr(app, "collection", "appliance"))):
        names |= {e["FullPath"].rpartition("/")[2] for e in _filer_list(weed, folder["FullPath"])}
    return names


def wait_for(predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
