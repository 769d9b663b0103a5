"""`appliance storage migrate --to seaweedfs` (docs/seaweedfs-migrate.md): a real
core + gateway on local disk, a real SeaweedFS (tests/seaweed_support.py), the
command run by the CLI while files are uploaded, overwritten and deleted, then
the switch exactly as documented; every file downloads right afterwards."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import seaweed_support
from harness import Appliance

from appliance import config
from appliance.host import seaweedfs_embedded
from appliance.host.seaweedfs import filer_jwt

seaweedfs = seaweed_support.seaweedfs   # the fixture


@pytest.fixture(scope="module")
def weed(seaweedfs):
    """One SeaweedFS for the module: blob ids are random, the tests cannot collide."""
    return seaweedfs(volumes=1, replication="000")


def _settings(weed) -> dict:
    return {"seaweedfs_filer": weed.filer_url, "seaweedfs_master": weed.master_address,
            "seaweedfs_jwt_key_file": str(weed.jwt_key_file), "seaweedfs_replication": weed.replication,
            "seaweedfs_embedded": "false", "seaweedfs_sweep_seconds": "2"}


def _put(client, name: str, data: bytes, overwrite: bool = False) -> None:
    r = client.put(f"/storage/default/{name}" + ("?overwrite=true" if overwrite else ""), data=data)
    assert r.status_code == 200, r.text


def _on_filer(weed, client, name: str) -> requests.Response:
    """HEAD of the file's blob on the filer (its ETag at the appliance is the blob id)."""
    blob = client.head(f"/storage/default/{name}").headers["ETag"].strip('"')
    return requests.head(f"{weed.filer_url}/appliance/blobs/{blob[:2]}/{blob}", headers=weed.auth(), timeout=5)


def _blob_path(app: Appliance, client, name: str):
    blob = client.head(f"/storage/default/{name}").headers["ETag"].strip('"')
    return app.data_dir / "files" / "blobs" / blob[:2] / blob


def test_migrate_while_serving_then_switch(weed, tmp_path):
    app = Appliance(tmp_path / "app", storage_quota_bytes=1 << 32, **_settings(weed)).start()
    try:
        admin = app.admin()
        files: dict[str, bytes] = {"empty": b"", "multi-chunk": os.urandom(9 << 20)}  # > 2 filer chunks
        files.update({f"before-{i}": os.urandom(1 << 20) for i in range(30)})
        for name, data in files.items():
            _put(admin, name, data)

        # The move, while the appliance serves: uploads, an overwrite and a delete meanwhile.
        move = subprocess.Popen([sys.executable, "-m", "appliance.cli", "storage", "migrate", "--to", "seaweedfs",
                                 "--jobs", "2"], env=app.env, cwd=app.data_dir.parent, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        i = 0
        while move.poll() is None or i < 3:
            files[f"during-{i}"] = os.urandom(200_000 + i)
            _put(admin, f"during-{i}", files[f"during-{i}"])
            i += 1
        files["before-1"] = os.urandom(300_000)
        _put(admin, "before-1", files["before-1"], overwrite=True)
        assert admin.delete("/storage/delete", params={"namespace": "default", "name": "before-2"}).status_code == 200
        del files["before-2"]
        out, err = move.communicate(timeout=60)
        assert move.returncode in (0, 3), out + err
        assert "pass 1:" in out and "files;" in out, out   # progress lines
        assert "BROKEN" not in out

        files["after"] = os.urandom(123_457)   # after the serving run, before the switch
        _put(admin, "after", files["after"])

        # --final is refused while `appliance up`'s core runs (its pid file names it).
        pid_file = app.data_dir / "run" / "core.pid"
        pid_file.parent.mkdir(exist_ok=True)
        pid_file.write_text(f"{app.procs['core'].pid}\n")
        refused = app.cli("storage", "migrate", "--to", "seaweedfs", "--final")
        assert refused.returncode == 1 and "--final needs the core stopped" in refused.stderr, refused.stderr
        pid_file.unlink()

        # The switch: stop the core, flip the backend, the final pass, start again.
        app.stop("core")
        app.stop("http")
        app.env["APPLIANCE_STORAGE_BACKEND"] = "seaweedfs"
        final = app.cli("storage", "migrate", "--to", "seaweedfs", "--final")
        assert final.returncode == 0, final.stdout + final.stderr
        assert f"COMPLETE: all {len(files)} file(s) are on SeaweedFS" in final.stdout, final.stdout
        app.start()

        admin = app.admin()
        for name, data in files.items():
            r = admin.get(f"/storage/default/{name}")
            assert r.status_code == 200 and r.content == data, name
            assert _on_filer(weed, admin, name).status_code == 200, name
        assert admin.get("/storage/default/before-2").status_code == 404
        _put(admin, "new", b"written to SeaweedFS")
        assert _on_filer(weed, admin, "new").status_code == 200
        assert admin.get("/storage/default/new").content == b"written to SeaweedFS"

        again = app.cli("storage", "migrate", "--to", "seaweedfs", "--read-back")   # idempotent: nothing to copy
        assert again.returncode == 0, again.stdout
        assert "0 copied now" in again.stdout and f"{len(files) + 1} already there" in again.stdout, again.stdout
    finally:
        app.close()


def test_broken_source_blob_and_a_bad_copy(weed, tmp_path):
    app = Appliance(tmp_path / "app", **_settings(weed)).start()
    try:
        admin = app.admin()
        data = {name: os.urandom(100_000) for name in ("good", "truncated", "stale-copy")}
        for name, content in data.items():
            _put(admin, name, content)
        first = app.cli("storage", "migrate", "--to", "seaweedfs")
        assert first.returncode == 0 and "3 copied now" in first.stdout, first.stdout

        # A filer copy of the right size but other bytes: found and written again.
        blob = admin.head("/storage/default/stale-copy").headers["ETag"].strip('"')
        r = requests.put(f"{weed.filer_url}/appliance/blobs/{blob[:2]}/{blob}", data=os.urandom(100_000),
                         headers=weed.auth(), timeout=10)
        assert r.status_code == 201
        # A source blob cut short on disk: reported by name, never counted.
        with open(_blob_path(app, admin, "truncated"), "r+b") as f:
            f.truncate(5)
        blob_t = admin.head("/storage/default/truncated").headers["ETag"].strip('"')
        requests.delete(f"{weed.filer_url}/appliance/blobs/{blob_t[:2]}/{blob_t}", headers=weed.auth(), timeout=10)

        second = app.cli("storage", "migrate", "--to", "seaweedfs")
        assert second.returncode == 1, second.stdout
        assert "/default/stale-copy" in second.stdout and "copying it again" in second.stdout
        assert f"BROKEN /default/truncated (blob {blob_t}): 5 bytes on disk, the database says 100000" \
            in second.stdout, second.stdout
        assert "INCOMPLETE: 1 broken source blob(s)" in second.stdout
        got = requests.get(f"{weed.filer_url}/appliance/blobs/{blob[:2]}/{blob}", headers=weed.auth(), timeout=10)
        assert got.content == data["stale-copy"]
        assert requests.head(f"{weed.filer_url}/appliance/blobs/{blob_t[:2]}/{blob_t}", headers=weed.auth(),
                             timeout=10).status_code == 404
    finally:
        app.close()


def test_refuses_without_a_filer(tmp_path):
    app = Appliance(tmp_path / "app", seaweedfs_filer="http://127.0.0.1:9", seaweedfs_embedded="false",
                    seaweedfs_jwt_key_file=str(tmp_path / "nokey"))
    app.data_dir.mkdir(parents=True)
    r = app.cli("storage", "migrate", "--to", "seaweedfs")
    assert r.returncode == 1 and "cannot read the filer's JWT key" in r.stderr, r.stderr
    (tmp_path / "nokey").write_text("k" * 32)
    r = app.cli("storage", "migrate", "--to", "seaweedfs")
    assert r.returncode == 1 and "the filer at http://127.0.0.1:9 does not answer" in r.stderr, r.stderr
    r = app.cli("storage", "migrate", "--to", "local")
    assert r.returncode == 2 and "invalid choice" in r.stderr



def test_embedded_seaweedfs_host_alone(tmp_path):
    """A host alone (seaweedfs_embedded, the default): the command starts the
    host's own SeaweedFS as `appliance up` would, and the switch finds it running."""
    app = Appliance(tmp_path / "app").start()
    cfg = config.load("/dev/null", env=app.env)
    try:
        admin = app.admin()
        files = {f"f{i}": os.urandom(50_000 + i) for i in range(5)}
        for name, data in files.items():
            _put(admin, name, data)
        moved = app.cli("storage", "migrate", "--to", "seaweedfs")
        assert moved.returncode == 0 and "5 copied now" in moved.stdout, moved.stdout + moved.stderr
        assert "embedded SeaweedFS running" in moved.stdout
        weed = seaweedfs_embedded.settings(dataclasses.replace(cfg, storage_backend="seaweedfs"))

        app.stop("core")
        app.stop("http")
        app.env["APPLIANCE_STORAGE_BACKEND"] = "seaweedfs"
        final = app.cli("storage", "migrate", "--to", "seaweedfs", "--final")
        assert final.returncode == 0 and "5 already there" in final.stdout, final.stdout + final.stderr
        # What `appliance up` hands its daemons for the embedded set.
        app.env.update({f"APPLIANCE_{k.upper()}": v for k, v in weed.items()})
        app.start()
        admin = app.admin()
        for name, data in files.items():
            assert admin.get(f"/storage/default/{name}").content == data, name
        blob = admin.head("/storage/default/f0").headers["ETag"].strip('"')
        token = filer_jwt(Path(weed["seaweedfs_jwt_key_file"]).read_text().strip())
        assert requests.head(f"{weed['seaweedfs_filer']}/appliance/blobs/{blob[:2]}/{blob}",
                             headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code == 200
    finally:
        app.close()
        seaweedfs_embedded.stop(cfg)


def test_killed_mid_copy_then_resumed(weed, tmp_path):
    app = Appliance(tmp_path / "app", storage_quota_bytes=1 << 32, **_settings(weed)).start()
    try:
        admin = app.admin()
        files = {f"f{i}": os.urandom(4 << 20) for i in range(10)}
        for name, data in files.items():
            _put(admin, name, data)
        move = subprocess.Popen([sys.executable, "-m", "appliance.cli", "storage", "migrate", "--to", "seaweedfs",
                                 "--jobs", "1"], env=app.env, cwd=app.data_dir.parent, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert move.stdout is not None
        for line in move.stdout:   # the first progress line comes after the first file
            if "files;" in line:
                break
        move.kill()   # kill -9, most likely mid-upload of the second file
        move.wait()
        resumed = app.cli("storage", "migrate", "--to", "seaweedfs")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        done = re.search(r"(\d+) copied now .* (\d+) already there", resumed.stdout)
        assert done and int(done.group(2)) >= 1 and int(done.group(1)) + int(done.group(2)) == 10, resumed.stdout
        for name, data in files.items():
            blob = admin.head(f"/storage/default/{name}").headers["ETag"].strip('"')
            got = requests.get(f"{weed.filer_url}/appliance/blobs/{blob[:2]}/{blob}", headers=weed.auth(), timeout=10)
            assert got.content == data, name
    finally:
        app.close()
