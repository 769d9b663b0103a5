"""Files on SeaweedFS when parts of it fail (docs/seaweedfs-store.md): three volume
servers on racks r0-r2 with replication 010 (every chunk on two racks), one
appliance on them for the module.

- kill -9 of a volume server while a file is downloaded: the right bytes or a
  clean failure (a body cut short), never wrong bytes; then every file
  downloads (direct and over gRPC); the server restarts and catches up; two
  of three killed: cut short or complete, never wrong;
- the master stopped: uploads 503 with a clear error, downloads go on, health
  and /storage/status say so; back when the master is;
- the orphan sweep: a blob no row names goes once older than
  seaweedfs_sweep_seconds, never while young.
"""
from __future__ import annotations

import hashlib
import os
import time
import urllib.request

import pytest
import requests
from seaweed_support import make_set, stop_quickly
from storage_backends import start_app, wait_for

SWEEP = 6


@pytest.fixture(scope="module")
def weed3(tmp_path_factory):
    weed = make_set(tmp_path_factory.mktemp("weed3"), volumes=3, replication="010").start()
    yield weed
    stop_quickly(weed)


@pytest.fixture(scope="module")
def app(weed3, tmp_path_factory):
    app = start_app(tmp_path_factory.mktemp("app"), weed3, seaweedfs_sweep_seconds=SWEEP)
    yield app
    app.close()


@pytest.fixture(scope="module")
def stored(app):
    """Three files of 10 MB (three 4 MiB windows each) and a small one: name -> bytes."""
    admin = app.admin()
    files = {f"f{i}.bin": os.urandom(10_000_000) for i in range(3)}
    files["small.txt"] = b"small file\n"
    for name, data in files.items():
        r = admin.put(f"/storage/default/{name}", data=data)
        assert r.status_code == 200, r.text
    return files


def _status(app) -> dict:
    return requests.get(app.url + "/storage/status", timeout=10).json()


def _download(app, name: str, **params) -> bytes:
    r = requests.get(f"{app.url}/storage/default/{name}", params=params, timeout=60)
    assert r.status_code == 200, r.text
    return r.content


def _all_download(app, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert _download(app, name) == data, name                # direct: the gateway reads the filer
        assert _download(app, name, id=f"t-{name}") == data, name  # over gRPC: the core reads it


def test_status_counts_the_volume_servers(app, stored):
    s = _status(app)
    assert (s["backend"], s["chunkserver_count"], s["total_servers"]) == ("seaweedfs", 3, 3)
    assert s["writable"] and s["readable"] and s["problem"] == ""
    assert 0 < s["free_bytes"] <= s["capacity_bytes"]
    assert requests.get(app.url + "/healthz", params={"service": "storage"}).text == "ok"


def _gateway_rss(app) -> int:
    """VmRSS in bytes of the gateway and its worker processes, summed."""
    pid = app.procs["http"].pid
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        pids = [pid, *(int(p) for p in f.read().split())]
    total = 0
    for p in pids:
        with open(f"/proc/{p}/status") as f:
            total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    return total


def test_a_slow_client_does_not_make_the_gateway_buffer_the_file(app):
    """The gateway reads the filer only as fast as the client takes the bytes:
    a client that stops after 1 MB leaves the 64 MB file in SeaweedFS, not in
    the gateway's memory (Tornado's streaming_callback would have read it all)."""
    data = os.urandom(64 << 20)
    assert app.admin().put("/storage/default/slow.bin", data=data).status_code == 200
    before = _gateway_rss(app)
    with requests.get(f"{app.url}/storage/default/slow.bin", stream=True, timeout=60) as r:
        assert r.status_code == 200
        it = r.iter_content(256 * 1024)
        got = bytearray()
        while len(got) < 1 << 20:
            got += next(it)
        time.sleep(3)  # at the filer's speed the whole file would have been read by now
        grown = _gateway_rss(app) - before
        for piece in it:
            got += piece
    assert grown < 24 << 20, f"the gateway grew by {grown >> 20} MiB while its client waited"
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


@pytest.mark.parametrize("victim", [0, 1])
def test_kill_9_of_a_volume_server_mid_download(app, weed3, stored, victim):
    name, data = "f0.bin", stored["f0.bin"]
    outcomes = []
    for params in ({}, {"id": f"kill-{victim}"}):   # direct from the gateway, then through the core
        with requests.get(f"{app.url}/storage/default/{name}", params=params, stream=True, timeout=60) as r:
            assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(data)
            got = bytearray()
            it = r.iter_content(256 * 1024)
            try:
                while len(got) < 2_000_000:
                    got += next(it)
                if not outcomes:
                    weed3.volumes[victim].kill()
                for piece in it:
                    got += piece
                outcomes.append("complete")
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError):
                outcomes.append("cut short")
            # Whatever arrived is the file's own bytes, never others.
            assert bytes(got) == data[:len(got)], "wrong bytes"
            if outcomes[-1] == "complete":
                assert len(got) == len(data)
    # With one of three servers gone every file still downloads, both ways.
    _all_download(app, stored)
    assert wait_for(lambda: _status(app)["chunkserver_count"] == 2, 15)
    s = _status(app)
    assert s["total_servers"] == 3 and "1 of 3 volume servers are down" in s["problem"]
    # Uploads go on meanwhile (010 needs two racks: two are left).
    admin = app.admin()
    extra = os.urandom(3_000_000)
    assert admin.put(f"/storage/default/while-down-{victim}.bin", data=extra).status_code == 200
    stored[f"while-down-{victim}.bin"] = extra
    # The server restarts and catches up: registered again, and it serves its
    # copies when another server goes (checked by the next victim and below).
    weed3.volumes[victim].restart()
    weed3.wait_ready(30)
    assert wait_for(lambda: _status(app)["chunkserver_count"] == 3, 15)
    _all_download(app, stored)
    print("outcomes:", outcomes)


def test_after_a_restart_the_other_copies_carry_every_file(app, weed3, stored):
    """Server 0 was killed and came back: with server 2 stopped now, files whose
    copies were on 0 and 2 are served from 0 again."""
    weed3.volumes[2].kill()
    try:
        _all_download(app, stored)
    finally:
        weed3.volumes[2].restart()
        weed3.wait_ready(30)


def test_both_copies_gone_mid_download_cuts_the_body_short_never_wrong(app, weed3, stored):
    """Two of three servers killed: a chunk with both copies on them cannot be
    read; the download ends short (after a few tries) or, if no such chunk, completes."""
    name, data = "f1.bin", stored["f1.bin"]
    with requests.get(f"{app.url}/storage/default/{name}", stream=True, timeout=120) as r:
        assert r.status_code == 200
        got = bytearray()
        it = r.iter_content(256 * 1024)
        try:
            while len(got) < 1_000_000:
                got += next(it)
            weed3.volumes[0].kill()
            weed3.volumes[1].kill()
            for piece in it:
                got += piece
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError):
            pass
        assert bytes(got) == data[:len(got)], "wrong bytes"
    try:
        r = requests.get(f"{app.url}/storage/default/{name}", timeout=120)
        assert r.status_code in (200, 503) and (r.status_code != 200 or r.content == data)
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError):
        pass  # cut short: the client sees an incomplete body, never a wrong one
    finally:
        for v in weed3.volumes[:2]:
            v.restart()
        weed3.wait_ready(30)
    _all_download(app, stored)


def test_master_loss_refuses_uploads_keeps_downloads_and_shows_in_health(app, weed3, stored):
    admin = app.admin()
    weed3.master.stop(timeout=5)
    try:
        assert wait_for(lambda: not _status(app)["writable"], 15)
        s = _status(app)
        assert "no SeaweedFS master answers" in s["problem"] and s["readable"]
        r = requests.get(app.url + "/healthz", params={"service": "storage"})
        assert r.status_code == 503 and r.json() == {"error": "storage unavailable"}
        assert requests.get(app.url + "/healthz").text == "ok"   # the appliance itself is up
        for put in (lambda: admin.put("/storage/default/no-master.bin", data=b"x" * 1000),
                    lambda: admin.post("/storage/upload", files={"file": ("no-master2.bin", b"y" * 1000)})):
            r = put()
            assert r.status_code == 503, r.text
            assert "SeaweedFS" in r.json()["error"]
        assert "no-master.bin" not in {f["name"] for f in admin.get("/storage/files").json()}
        # Downloads of stored files go on while the filer and volume servers serve them.
        _all_download(app, stored)
    finally:
        weed3.master.start()
        weed3.wait_ready(30)
    assert wait_for(lambda: _status(app)["writable"], 20)
    assert requests.get(app.url + "/healthz", params={"service": "storage"}).text == "ok"
    assert admin.put("/storage/default/master-back.bin", data=b"z" * 1000).status_code == 200


def test_the_sweep_removes_old_orphans_and_never_young_ones(app, weed3, stored):
    orphan = "ee" + hashlib.sha256(os.urandom(8)).hexdigest()[:30]
    url = f"{weed3.filer_url}/appliance/blobs/ee/{orphan}?replication=010&collection=appliance"
    req = urllib.request.Request(url, data=b"never committed", method="PUT", headers=weed3.auth())
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 201
    from storage_backends import blob_names
    started = time.monotonic()
    # Young: kept for at least SWEEP seconds, whatever the sweep passes (every SWEEP / 4 s) see.
    while time.monotonic() - started < SWEEP - 1.5:
        assert orphan in blob_names(app)
        time.sleep(0.5)
    assert wait_for(lambda: orphan not in blob_names(app), 1.5 * SWEEP + 5)
    assert "removed 1 orphan blob(s)" in app.log("core")
    # Committed files are never touched.
    for name in stored:
        assert requests.head(f"{app.url}/storage/default/{name}").status_code == 200


def test_two_installations_on_one_seaweedfs_never_sweep_each_others_files(app, weed3, stored, tmp_path):
    """Each installation's blobs live under its own collection's folder
    (/<collection>/blobs): the other's sweep never takes them for orphans."""
    from storage_backends import blob_names
    sweeps_before = app.log("core").count("orphan blob")
    second = start_app(tmp_path / "second", weed3, seaweedfs_sweep_seconds=SWEEP, seaweedfs_collection="second")
    try:
        data = os.urandom(300_000)
        assert second.admin().put("/storage/default/theirs.bin", data=data).status_code == 200
        assert blob_names(second) and not blob_names(second) & blob_names(app)
        time.sleep(1.5 * SWEEP + 2)   # old enough for both sweeps, several passes of each
        assert requests.get(f"{second.url}/storage/default/theirs.bin", timeout=30).content == data
        for name, content in stored.items():
            assert _download(app, name) == content, name
        assert "orphan blob" not in second.log("core") and app.log("core").count("orphan blob") == sweeps_before
    finally:
        second.close()


def test_the_sweep_spares_a_replaced_blob_while_readers_have_it(app):
    """An overwrite leaves the old blob REPLACED_GRACE_SECONDS for the downloads
    reading it; no row names it, so the sweep must not take it before."""
    admin = app.admin()
    old, new = os.urandom(40_000_000), os.urandom(1000)   # ten 4 MiB windows: most not yet read
    assert admin.put("/storage/default/grace.bin", data=old).status_code == 200
    time.sleep(SWEEP + 1)   # the blob is now old enough for the sweep
    with requests.get(f"{app.url}/storage/default/grace.bin", stream=True, timeout=60) as r:
        assert r.status_code == 200
        body = r.raw.read(65536)
        assert admin.put("/storage/default/grace.bin", params={"overwrite": "true"}, data=new).status_code == 200
        time.sleep(SWEEP / 2 + 1)   # two sweep passes or more
        body += r.raw.read()
    assert len(body) == len(old) and body == old
    assert _download(app, "grace.bin") == new
