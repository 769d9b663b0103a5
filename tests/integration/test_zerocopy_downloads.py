"""Downloads the kernel writes (appliance/http/zerocopy.py: sendfile on local
disk, splice from the filer on SeaweedFS), on both backends, with raw
sockets as the clients the hostile review used: the body is exact at the
1 MiB edges, a pipelining client gets the whole first body (no reset), a
client that half-closes keeps its connection counted against
``http_max_connections_per_address`` until its transfer ends, and every
descriptor of a transfer is closed whatever the client does."""
from __future__ import annotations

import hashlib
import os
import socket
import time

import pytest
from storage_backends import BACKENDS, seaweed_set_fixture, wait_for  # noqa: F401

MIB = 1 << 20
CAP = 3


@pytest.fixture(scope="module", params=BACKENDS)
def served(request, tmp_path_factory):
    """(appliance with one gateway worker and CAP connections an address, files)."""
    from storage_backends import start_app
    weed = request.getfixturevalue("seaweed_set") if request.param == "seaweedfs" else None
    app = start_app(tmp_path_factory.mktemp(f"zc-{request.param}"), weed, http_workers=1,
                    http_max_connections_per_address=CAP, login_max_successes_per_address=1_000_000)
    admin = app.admin()
    files = {"big.bin": os.urandom(24 * MIB), "exact.bin": os.urandom(MIB), "under.bin": os.urandom(MIB - 1)}
    for name, data in files.items():
        assert admin.put(f"/storage/default/{name}", data=data).status_code == 200
    yield app, admin.token, files
    app.close()


def _request(token: str, path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{extra}\r\n".encode()


def _read_all(s: socket.socket) -> tuple[bytes, bytes, str]:
    buf, how = b"", "EOF"
    while True:
        try:
            data = s.recv(1 << 16)
        except ConnectionResetError:
            how = "RESET"
            break
        if not data:
            break
        buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    return head, body, how


def _gateway_fds(app) -> int:
    return len(os.listdir(f"/proc/{app.procs['http'].pid}/fd"))


def _connect(app) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(app.url.rsplit(":", 1)[1])), timeout=30)


@pytest.mark.parametrize("name, ranged", [("big.bin", ""), ("big.bin", "bytes=-1048576"),
                                          ("big.bin", f"bytes={24 * MIB - 1}-"), ("exact.bin", ""),
                                          ("under.bin", "")])
def test_bodies_are_exact_at_the_edges(served, name, ranged):
    app, token, files = served
    data = files[name]
    with _connect(app) as s:
        s.sendall(_request(token, f"/storage/default/{name}", f"Range: {ranged}\r\n" if ranged else ""))
        want = data[-MIB:] if ranged == "bytes=-1048576" else data[-1:] if ranged else data
        spliced = len(want) >= MIB
        head, body, how = _read_all(s) if spliced else _read_one(s, len(want))
    assert body == want and how == "EOF", (head[:200], len(body), how)
    assert (b"Connection: close" in head) == spliced, head   # small bodies keep the connection


def _read_one(s: socket.socket, length: int) -> tuple[bytes, bytes, str]:
    """One response on a kept-alive connection: up to its Content-Length."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(1 << 16)
    head, _, body = buf.partition(b"\r\n\r\n")
    while len(body) < length:
        body += s.recv(1 << 16)
    return head, body, "EOF"


def test_a_pipelining_client_gets_the_whole_first_body_then_a_clean_close(served):
    app, token, files = served
    with _connect(app) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)   # the tail waits in the gateway's buffers
        s.sendall(_request(token, "/storage/default/big.bin") + _request(token, "/healthz"))
        time.sleep(0.1)
        s.sendall(_request(token, "/healthz"))
        time.sleep(1.0)
        head, body, how = _read_all(s)
    assert how == "EOF" and hashlib.sha256(body).digest() == hashlib.sha256(files["big.bin"]).digest(), (
        len(body), how)


def test_a_half_closed_client_stays_counted_and_leaves_no_descriptor(served):
    app, token, files = served
    before = _gateway_fds(app)
    clients = []
    for _ in range(CAP):
        s = _connect(app)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        s.sendall(_request(token, "/storage/default/big.bin"))
        assert s.recv(15).startswith(b"HTTP/1.1 200")
        s.shutdown(socket.SHUT_WR)   # request done, still reading
        clients.append(s)
    time.sleep(0.5)
    # Whatever the gateway made of the half-closes, the address holds at most CAP connections.
    extra = _connect(app)
    extra.settimeout(3)
    try:
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answered = extra.recv(100)
    except OSError:
        answered = b""
    # A transfer goes on only while its connection is counted (else it ended, as
    # a failed flush() ends one on the ordinary path: what arrives is buffered).
    got = [_drain(s) for s in clients]
    live = sum(1 for n in got if n >= len(files["big.bin"]))
    assert live + bool(answered) <= CAP, (got, answered[:40])
    extra.close()
    for s in clients:
        s.close()
    assert wait_for(lambda: _gateway_fds(app) <= before, 15), (_gateway_fds(app), before)


def _drain(s: socket.socket) -> int:
    """Bytes read until EOF, a reset or 3 s without any."""
    s.settimeout(3)
    total = 0
    try:
        while data := s.recv(1 << 20):
            total += len(data)
    except OSError:
        pass
    return total


@pytest.mark.parametrize("when", ["after headers", "mid-body", "reset mid-body"])
def test_a_client_gone_at_any_point_leaves_no_descriptor(served, when):
    app, token, files = served
    before = _gateway_fds(app)
    s = _connect(app)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    s.sendall(_request(token, "/storage/default/big.bin"))
    s.recv(15)
    if when != "after headers":
        for _ in range(20):
            s.recv(1 << 16)
    if when.startswith("reset"):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
    assert wait_for(lambda: _gateway_fds(app) <= before, 15), (_gateway_fds(app), before)
    with _connect(app) as again:   # and the gateway serves on
        again.sendall(_request(token, "/storage/default/exact.bin"))
        assert _read_all(again)[1] == files["exact.bin"]
