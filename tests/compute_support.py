"""Helpers shared by the compute tests: users, SSH keys, the status socket."""
from __future__ import annotations

import itertools
import json
import sqlite3
import time

import websocket
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from harness import Appliance, Client

_names = itertools.count()


def new_user(app: Appliance, admin: Client, password: str = "pw-123456") -> Client:
    name = f"cu{next(_names)}_{time.monotonic_ns() % 100000}"
    r = admin.post("/admin/users", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return app.login(name, password)


def keypair(kind: str = "ed25519", bits: int = 2048):
    """(private key object, OpenSSH public key line)."""
    if kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    elif kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    else:
        key = ec.generate_private_key({"p256": ec.SECP256R1(), "p384": ec.SECP384R1(),
                                       "p521": ec.SECP521R1()}[kind])
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return key, public + " test@example"


def private_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()


def add_key(client: Client, kind: str = "ed25519"):
    """Register a new key; returns (key id, private key object)."""
    key, public = keypair(kind)
    r = client.post("/compute/ssh-keys", json={"name": f"key-{kind}", "public_key": public})
    assert r.status_code == 200, r.text
    return r.json()["id"], key


class StatusSocket:
    """The /compute/ws client: the snapshot first, then status changes."""

    def __init__(self, app: Appliance, token: str, *, via_header: bool = False, timeout: float = 30):
        url = app.url.replace("http://", "ws://") + "/compute/ws"
        if via_header:
            self.ws = websocket.create_connection(url, header=[f"Authorization: Bearer {token}"], timeout=timeout)
        else:
            self.ws = websocket.create_connection(f"{url}?token={token}", timeout=timeout)
        first = json.loads(self.ws.recv())
        assert first["type"] == "containers", first
        self.snapshot = first["data"]
        self.seen: list[dict] = []

    def next(self) -> dict:
        message = json.loads(self.ws.recv())
        assert message["type"] == "container_status", message
        self.seen.append(message["data"])
        return message["data"]

    def wait(self, container_id: str, *statuses: str, timeout: float = 30) -> dict:
        """The first event for ``container_id`` with one of ``statuses``."""
        deadline = time.monotonic() + timeout
        for event in self.seen:
            if event["container_id"] == container_id and event["status"] in statuses:
                self.seen.remove(event)
                return event
        while time.monotonic() < deadline:
            # short reads: server pings must not keep a long read from timing out
            self.ws.settimeout(max(0.05, min(1.0, deadline - time.monotonic())))
            try:
                event = self.next()
            except websocket.WebSocketTimeoutException:
                continue
            if event["container_id"] == container_id and event["status"] in statuses:
                self.seen.remove(event)
                return event
        raise TimeoutError(f"{container_id} never reached {statuses}")

    def close(self) -> None:
        self.ws.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def running(app: Appliance, client: Client, key_id: str | None = None, *, timeout: float = 30, **body) -> dict:
    """A new container of ``client``'s (``body`` over the defaults), once the
    status socket says it runs; a new key of theirs is selected if none is given."""
    if key_id is None:
        key_id, _ = add_key(client)
    with StatusSocket(app, client.token) as ws:
        r = client.post("/compute/containers", json={"name": "box", "ssh_key_ids": [key_id], **body})
        assert r.status_code == 200, r.text
        cid = r.json()["id"]
        event = ws.wait(cid, "running", "error", timeout=timeout)
    c = client.get(f"/compute/containers/{cid}").json()
    assert event["status"] == "running", c
    return c


def db_row_id(app: Appliance, table: str, public_id: str) -> int | None:
    """The row id of ``public_id`` in ``table`` of the appliance's SQLite
    database (read-only), None if there is no such row."""
    db = sqlite3.connect(f"file:{app.data_dir / 'appliance.db'}?mode=ro", uri=True)
    try:
        row = db.execute(f"SELECT id FROM {table} WHERE public_id = ?", (public_id,)).fetchone()
        return row[0] if row else None
    finally:
        db.close()


class LogStream:
    """GET /compute/containers/{id}/logs (Server-Sent Events) over a socket of
    its own, read in a thread: ``events`` collects the events' JSON as they
    arrive; ``status`` and ``body`` (for an error answer) as the gateway sent them."""

    def __init__(self, app: Appliance, token: str, cid: str, *, via_query: bool = True):
        import socket
        import threading
        from urllib.parse import quote, urlsplit
        url = urlsplit(app.url)
        path = f"/compute/containers/{quote(cid)}/logs" + (f"?token={quote(token)}" if via_query else "")
        auth = "" if via_query else f"Authorization: Bearer {token}\r\n"
        self.sock = socket.create_connection((url.hostname, url.port), timeout=30)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n{auth}\r\n".encode())
        self.file = self.sock.makefile("rb")
        self.status = int(self.file.readline().split()[1])
        self.headers = {}
        while (line := self.file.readline().decode().strip()):
            key, _, value = line.partition(":")
            self.headers[key.lower()] = value.strip()
        self.events: list[dict] = []
        self.body = None
        if self.status != 200:
            self.body = json.loads(self.file.read(int(self.headers.get("content-length", 0))))
            self.close()
            return
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for raw in self.file:
                if raw.startswith(b"data: "):
                    self.events.append(json.loads(raw[6:]))
        except (OSError, ValueError):  # closed by the test
            pass

    def wait_for(self, text: str, timeout: float = 5.0) -> tuple[dict, float]:
        """The first event whose line contains ``text``, and the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            for event in list(self.events):
                if text in event["line"]:
                    return event, time.monotonic() - started
            time.sleep(0.01)
        raise AssertionError(f"{text!r} not in the log stream: {self.events}")

    def close(self) -> None:
        import socket
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
