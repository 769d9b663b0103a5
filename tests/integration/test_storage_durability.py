"""Storage across restarts and kill -9, and the all-gRPC byte path, on both
blob stores (local disk, SeaweedFS: storage_backends.py).

Each test here runs its own appliance (not the session one) because it kills
or reconfigures processes; the SeaweedFS ones share one SeaweedFS set.
"""
import hashlib
import os
import socket
import subprocess
import threading
import time

import pytest
import requests
from seaweed_support import make_set, stop_quickly
from storage_backends import BACKENDS, blob_names, own_apps_fixture, wait_for  # noqa: F401
from test_storage_helpers import curl_upload, file_sha256, refused_mid_stream, sha256, upload


@pytest.fixture(scope="module")
def seaweed_set(tmp_path_factory):
    """A SeaweedFS of the module's own: the kill -9 test sweeps with a short age,
    which would take a live appliance's blobs on a shared set for orphans."""
    weed = make_set(tmp_path_factory.mktemp("weed")).start()
    yield weed
    stop_quickly(weed)


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def own_appliance(own_apps, backend):
    return lambda **settings: own_apps(backend, **settings)


def test_everything_survives_a_restart_of_all_processes(own_apps, tmp_path):
    """(Local disk: the SeaweedFS variants below restart the core and gateway too.)"""
    app = own_apps("local")
    admin = app.admin()
    admin.post("/storage/namespaces", json={"name": "keep", "visibility": 1, "hidden": True})
    data = os.urandom(3_000_000)
    assert upload(admin, "keep", "big.bin", data).status_code == 200
    assert upload(admin, "default", "pub.txt", b"public").status_code == 200
    before = requests.get(app.url + "/storage/keep/big.bin")
    app.close()
    app.start()
    admin = app.admin()
    r = requests.get(app.url + "/storage/keep/big.bin")
    assert r.status_code == 200 and r.content == data
    assert r.headers["ETag"] == before.headers["ETag"]
    assert r.headers["Last-Modified"] == before.headers["Last-Modified"]
    ns = [n for n in admin.get("/storage/namespaces").json() if n["name"] == "keep"][0]
    assert ns == {"name": "keep", "count": 1, "hidden": True, "visibility": 1, "owner_id": admin.user_id}
    assert requests.get(app.url + "/storage/default/pub.txt").content == b"public"


def test_restart_sweeps_unfinished_uploads_and_orphan_blobs(own_apps):
    app = own_apps("local")
    assert upload(app.admin(), "default", "a", b"a").status_code == 200
    app.close()
    files = app.data_dir / "files"
    (files / "tmp" / "deadbeef.part").write_bytes(b"half an upload")
    orphan = files / "blobs" / "ab" / ("ab" + "0" * 30)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"renamed but never committed")
    app.start()
    assert not (files / "tmp" / "deadbeef.part").exists()
    assert not orphan.exists()
    assert requests.get(app.url + "/storage/default/a").content == b"a"
    assert "removed 1 unfinished upload(s), 1 orphan blob(s)" in app.log("core")


def _slow_upload(app, token, name, size, started):
    """A multipart upload that stalls after half its body (then is cut off by the kill)."""
    boundary = "killBOUNDARY"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    try:
        with socket.create_connection(("127.0.0.1", app.http_port)) as s:
            s.sendall((f"POST /storage/upload?namespace=default HTTP/1.1\r\nHost: x\r\n"
                       f"Authorization: Bearer {token}\r\nContent-Length: {len(head) + size + len(tail)}\r\n"
                       f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode() + head)
            s.sendall(os.urandom(size // 2))
            started.release()
            time.sleep(30)
    except OSError:
        pass


@pytest.mark.parametrize("local_io", [True, False])
def test_kill_9_of_the_core_during_uploads(own_appliance, tmp_path, local_io):
    """Uploads that got their 200 survive kill -9 intact; the ones in flight leave nothing."""
    sweep = 4  # SeaweedFS: orphans older than this go (never younger ones)
    app = own_appliance(storage_local_io=str(local_io).lower(), seaweedfs_sweep_seconds=sweep)
    admin = app.admin()
    committed: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def uploader(k):
        i = 0
        while not stop.is_set():
            data = os.urandom(200_000 + 7919 * i)
            name = f"w{k}-{i}.bin"
            try:
                r = upload(admin, "default", name, data)
            except requests.RequestException:
                return
            if r.status_code == 200:
                with lock:
                    committed[name] = sha256(data)
            i += 1

    stalled = threading.Semaphore(0)
    slow = [threading.Thread(target=_slow_upload, args=(app, admin.token, f"slow{j}.bin", 8_000_000, stalled),
                             daemon=True) for j in range(2)]
    for t in slow:
        t.start()
    for _ in slow:
        assert stalled.acquire(timeout=10)
    workers = [threading.Thread(target=uploader, args=(k,)) for k in range(3)]
    for t in workers:
        t.start()
    time.sleep(2.0)
    app.kill("core")
    stop.set()
    for t in workers:
        t.join(30)
    assert committed, "some uploads should have finished before the kill"
    app.stop("http")
    app.start()
    listing = {f["name"]: f for f in requests.get(app.url + "/storage/files").json()}
    for name, digest in committed.items():
        r = requests.get(app.url + f"/storage/default/{name}")
        assert r.status_code == 200, name
        assert sha256(r.content) == digest, f"{name} changed across kill -9"
    assert "slow0.bin" not in listing and "slow1.bin" not in listing
    # Every listed file is complete (a 200 may have been lost in flight, never bytes).
    for name, f in listing.items():
        r = requests.get(app.url + f"/storage/default/{name}")
        assert len(r.content) == f["size"]
    # No temp files remain; exactly one blob per file row (on SeaweedFS: once a
    # sweep has passed the orphans' age: blobs of earlier tests here are orphans too).
    if app.weed is None:
        assert not list((app.data_dir / "files" / "tmp").iterdir())
        assert len(blob_names(app)) == len(listing)
    else:
        assert wait_for(lambda: len(blob_names(app)) == len(listing), 2.5 * sweep), \
            (len(blob_names(app)), len(listing))


@pytest.fixture
def grpc_app(own_appliance):
    return own_appliance(storage_local_io="false", max_upload_bytes=str(8 * 1024 * 1024))


def test_all_bytes_over_grpc_round_trip(grpc_app, tmp_path):
    admin = grpc_app.admin()
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for _ in range(6):
            f.write(os.urandom(1 << 20))
    status, body = curl_upload(admin, src, namespace="default")
    assert status == 200 and body["size"] == 6 << 20
    r = requests.get(grpc_app.url + "/storage/default/big.bin")
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == file_sha256(src)
    r = requests.get(grpc_app.url + "/storage/default/big.bin", headers={"Range": "bytes=1000000-1999999"})
    assert r.status_code == 206 and r.content == src.read_bytes()[1000000:2000000]
    r = admin.put("/storage/default/raw.bin", data=b"r" * 1000)
    assert r.status_code == 200
    assert requests.get(grpc_app.url + "/storage/default/raw.bin").content == b"r" * 1000
    # No data message at all (SeaweedFS refused it: "took too long to commit", no blob was ever written).
    assert admin.put("/storage/default/empty.bin", data=b"").status_code == 200
    r = requests.get(grpc_app.url + "/storage/default/empty.bin")
    assert r.status_code == 200 and r.content == b"" and r.headers["Content-Length"] == "0"


def test_upload_limit_is_413_and_stores_nothing(grpc_app, tmp_path):
    admin = grpc_app.admin()
    before = blob_names(grpc_app)
    src = tmp_path / "huge.bin"
    src.write_bytes(os.urandom(9 * 1024 * 1024))
    status, body = curl_upload(admin, src, namespace="default")
    assert status == 413 and "limit" in body["error"]
    # Without a Content-Length the core counts the bytes itself.
    out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}",
                          "-H", f"Authorization: Bearer {admin.token}", "-H", "Transfer-Encoding: chunked",
                          "-T", str(src), grpc_app.url + "/storage/default/huge2.bin"],
                         capture_output=True, text=True)
    # every byte over gRPC here: the grpcio race refused_mid_stream describes may turn the 413 into a 500
    assert refused_mid_stream(out.stdout, "limit", "false", status=413), out.stdout
    r = admin.post("/storage/upload", files={"file": ("x", b"1")}, headers={"X-File-Size": str(9 << 20)})
    assert r.status_code == 413
    assert requests.get(grpc_app.url + "/storage/files").json() == []
    assert blob_names(grpc_app) == before


def test_upload_limit_with_local_io(own_appliance, tmp_path):
    app = own_appliance(max_upload_bytes=str(1024 * 1024))
    admin = app.admin()
    src = tmp_path / "huge.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024))
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                          "-H", f"Authorization: Bearer {admin.token}", "-H", "Transfer-Encoding: chunked",
                          "-T", str(src), app.url + "/storage/default/huge.bin"],
                         capture_output=True, text=True)
    assert out.stdout == "413"
    assert curl_upload(admin, src, namespace="default")[0] == 413
    assert admin.put("/storage/default/ok.bin", data=b"k" * 1000).status_code == 200
    assert [f["name"] for f in requests.get(app.url + "/storage/files").json()] == ["ok.bin"]
