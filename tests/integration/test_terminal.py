"""The terminal WebSocket with a real WebSocket client, on a real LXC guest.

One appliance on its own bridge ``aptm0`` (10.220.0.0/24); alice owns a
running guest.
"""
from __future__ import annotations

import json
import os
import time

import pytest
import requests
import websocket

from access_support import Person, launch, start_appliance, stop_appliance

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("libvirt LXC guests need root", allow_module_level=True)
pytest.importorskip("libvirt", reason="libvirt-python is not installed")

BRIDGE, SUBNET = "aptm0", "10.220.0.0/24"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = start_appliance(tmp_path_factory.mktemp("terminal"), BRIDGE, SUBNET)
    yield a
    stop_appliance(a, BRIDGE)


@pytest.fixture(scope="module")
def admin(app):
    return app.admin()


@pytest.fixture(scope="module")
def alice(app, admin, tmp_path_factory):
    return Person(app, admin, tmp_path_factory.mktemp("keys-a"))


@pytest.fixture(scope="module")
def bob(app, admin, tmp_path_factory):
    return Person(app, admin, tmp_path_factory.mktemp("keys-b"))


@pytest.fixture(scope="module")
def guest(app, alice):
    return launch(app, alice, storage_gb=1)


def url(app, cid: str, token: str | None = None, **query) -> str:
    base = app.url.replace("http://", "ws://") + f"/compute/containers/{cid}/terminal"
    if token:
        query["token"] = token
    if query:
        base += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return base


class Term:
    def __init__(self, ws):
        self.ws = ws
        self.seen = b""

    def send(self, text: str) -> None:
        self.ws.send_binary(text.encode())

    def expect(self, needle: bytes, timeout: float = 20) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, self.seen[-2000:]
            self.ws.settimeout(left)
            opcode, data = self.ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise EOFError(self.seen[-2000:])
            assert opcode == websocket.ABNF.OPCODE_BINARY, (opcode, data)
            self.seen += data
        return self.seen


def open_term(app, cid, token, **kw) -> Term:
    return Term(websocket.create_connection(url(app, cid, token, **kw), timeout=20))


def test_run_a_command_and_read_its_output(app, guest, alice):
    t = open_term(app, guest["id"], alice.client.token)
    t.send("echo $((6*7))-$(id -un)-$(hostname); tty\r")
    out = t.expect(b"42-root-" + guest["id"].encode())
    assert b"/dev/pts/" in t.expect(b"/dev/pts/")
    assert b"\x1b" in out or b"#" in out  # a prompt from a real interactive shell
    t.ws.close()


def test_resize_and_stty_size(app, guest, alice):
    t = open_term(app, guest["id"], alice.client.token, cols=120, rows=40)
    t.send("stty size\r")
    t.expect(b"40 120")
    t.ws.send(json.dumps({"type": "resize", "cols": 91, "rows": 33}))
    t.ws.send(json.dumps({"type": "input", "data": "stty size\r"}))
    t.expect(b"33 91")
    t.ws.close()


def test_text_frames_are_raw_input_and_header_auth_works(app, guest, alice):
    ws = websocket.create_connection(url(app, guest["id"]), timeout=20,
                                     header=[f"Authorization: Bearer {alice.client.token}"])
    t = Term(ws)
    for ch in "echo typed-as-text\r":  # one keystroke per text frame, Enter as \r
        ws.send(ch)
    t.expect(b"typed-as-text\r\n")
    ws.send("not json {")
    ws.send("\r")
    ws.close()


def _shell_pids(cid: str) -> set[int]:
    """Host pids of processes in the guest that belong to a terminal (have a pts)."""
    pids = set()
    marker = f"ap-{cid}".encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cgroup = open(f"/proc/{name}/cgroup", "rb").read()
            environ = open(f"/proc/{name}/environ", "rb").read()
        except OSError:
            continue
        if marker in cgroup and b"TERMINAL_TEST_MARK=1" in environ:
            pids.add(int(name))
    return pids


def test_closing_ends_the_shell_and_leaves_nothing(app, guest, alice):
    cid = guest["id"]
    t = open_term(app, cid, alice.client.token)
    # a shell, a child and a background job that ignores SIGHUP, all marked
    t.send("export TERMINAL_TEST_MARK=1; sleep 1000 & nohup sleep 1001 >/dev/null 2>&1 & "
           "bash -c 'sleep 1002' & echo started-$((1+1))\r")
    t.expect(b"started-2")
    deadline = time.monotonic() + 10
    while len(_shell_pids(cid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_shell_pids(cid)) >= 3
    t.ws.close()
    deadline = time.monotonic() + 10
    while _shell_pids(cid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _shell_pids(cid) == set()


def test_exit_closes_the_socket(app, guest, alice):
    t = open_term(app, guest["id"], alice.client.token)
    t.send("exit\r")
    with pytest.raises((EOFError, websocket.WebSocketConnectionClosedException)):
        t.expect(b"never-printed", timeout=10)


def test_ping_keeps_it_alive(app, guest, alice):
    ws = websocket.create_connection(url(app, guest["id"], alice.client.token), timeout=20)
    ws.ping(b"x")
    deadline = time.monotonic() + 10
    while True:
        opcode, data = ws.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_PONG:
            assert data == b"x"
            break
        assert time.monotonic() < deadline
    ws.close()


# -- refusals: JSON error, never an upgrade --------------------------------------------------

def _upgrade(app, cid, token=None, headers=None):
    h = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
         "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", **(headers or {})}
    target = app.url + f"/compute/containers/{cid}/terminal" + (f"?token={token}" if token else "")
    return requests.get(target, headers=h, timeout=20)


def test_refusals_are_json_errors_without_upgrade(app, guest, alice, bob):
    cid = guest["id"]
    r = _upgrade(app, cid)
    assert r.status_code == 401 and "error" in r.json()
    r = _upgrade(app, cid, "garbage")
    assert r.status_code == 401
    r = _upgrade(app, cid, bob.client.token)  # someone else's container
    assert r.status_code == 404 and "error" in r.json()
    r = _upgrade(app, "zzzzzzzz", alice.client.token)
    assert r.status_code == 404
    # a token with read only on the container: 403
    token = alice.client.post("/api/tokens", json={
        "name": "ro", "scopes": {f"compute.{alice.client.user_id}.containers.{cid}": ["read"]}}).json()["token"]
    r = _upgrade(app, cid, token)
    assert r.status_code == 403 and "error" in r.json()
    # ...with update it opens
    token = alice.client.post("/api/tokens", json={
        "name": "rw", "scopes": {f"compute.{alice.client.user_id}.containers.{cid}": ["update"]}}).json()["token"]
    t = open_term(app, cid, token)
    t.send("echo via-token\r")
    t.expect(b"via-token\r\n")
    t.ws.close()


def test_stopped_container_is_refused(app, guest, alice):
    cid = guest["id"]
    assert alice.client.post(f"/compute/containers/{cid}/stop").json()["status"] == "stopped"
    r = _upgrade(app, cid, alice.client.token)
    assert r.status_code == 409 and "not running" in r.json()["error"]
    assert r.headers.get("Upgrade") is None
