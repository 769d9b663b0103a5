"""The gateway serving HTTPS and WSS itself (tls_cert_file / tls_key_file), in
forked workers, with a certificate made here (the fleet install serves
the API over TLS, docs/install.md; tests/install checks the installed host)."""
from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import websocket
from compute_support import add_key, new_user
from harness import Appliance
from tlscert import der, make_cert


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("tls"), ["127.0.0.1", "localhost"])


@pytest.fixture(scope="module")
def app(tmp_path_factory, cert):
    crt, key = cert
    a = Appliance(tmp_path_factory.mktemp("tls-app"), guest_driver="fake", http_workers=2,
                  tls_cert_file=crt, tls_key_file=key)
    a.url = a.url.replace("http://", "https://")
    # The harness's requests (health wait, logins) verify against our certificate.
    patch = pytest.MonkeyPatch()
    patch.setenv("REQUESTS_CA_BUNDLE", str(crt))
    a.start()
    yield a
    a.close()
    patch.undo()


def test_every_worker_serves_https_with_the_configured_certificate(app, cert):
    crt, _ = cert
    assert len(children(app.procs["http"].pid)) == 2
    expected = der(crt.read_text())
    context = ssl.create_default_context(cafile=str(crt))
    # Fresh connections land on either worker; each must present our certificate
    # and complete a verified handshake.
    for _ in range(12):
        with socket.create_connection(("127.0.0.1", app.http_port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.getpeercert(binary_form=True) == expected
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                reply = b"".join(iter(lambda: tls.recv(4096), b""))
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"ok"), reply
    assert "http gateway on https://" in app.log("http")


def test_api_over_https_with_verification(app, cert):
    admin = app.admin()  # POST /api/login over HTTPS, verified (REQUESTS_CA_BUNDLE)
    r = admin.get("/api/session")
    assert r.status_code == 200 and r.json()["username"] == "admin"
    # A client that does not trust the certificate is refused by its own TLS stack.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(app.url + "/healthz", verify=requests.certs.where(), timeout=5)


def test_the_session_cookie_is_secure_under_https(app):
    r = requests.post(app.url + "/api/login", json={"username": "admin", "password": app.admin_password})
    assert r.status_code == 200
    flags = [part.strip().lower() for part in r.headers["Set-Cookie"].split(";")]
    assert {"secure", "httponly", "samesite=strict"} <= set(flags), flags


def test_plain_http_gets_no_answer(app):
    with socket.create_connection(("127.0.0.1", app.http_port), timeout=5) as s:
        s.sendall(b"GET /healthz?token=SECRET HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            reply = s.recv(4096)
        except ConnectionResetError:
            reply = b""
    assert not reply.startswith(b"HTTP/"), reply


def test_websockets_over_wss(app, cert):
    crt, _ = cert
    admin = app.admin()
    user = new_user(app, admin)
    kid, _ = add_key(user)
    wss = app.url.replace("https://", "wss://")
    sslopt = {"ca_certs": str(crt)}
    ws = websocket.create_connection(f"{wss}/compute/ws?token={user.token}", sslopt=sslopt, timeout=10)
    try:
        first = json.loads(ws.recv())
        assert first == {"type": "containers", "data": []}
        r = user.post("/compute/containers", json={"name": "box", "ssh_key_ids": [kid]})
        assert r.status_code == 200, r.text
        cid = r.json()["id"]
        seen = []
        while "running" not in seen:
            message = json.loads(ws.recv())
            assert message["type"] == "container_status" and message["data"]["container_id"] == cid
            seen.append(message["data"]["status"])
    finally:
        ws.close()
    term = websocket.create_connection(f"{wss}/compute/containers/{cid}/terminal?token={user.token}",
                                       sslopt=sslopt, timeout=10)
    try:
        term.send_binary(b"over wss ")
        term.send('{"type":"input","data":"typed"}')
        echoed = b""
        while b"over wss typed" not in echoed:
            echoed += term.recv()
    finally:
        term.close()


@pytest.mark.parametrize("which", ["cert only", "mismatched key", "missing file"])
def test_bad_tls_settings_stop_the_gateway_with_a_clear_error(tmp_path, cert, which):
    crt, key = cert
    other_crt, other_key = make_cert(tmp_path / "other", ["127.0.0.1"])
    settings = {"cert only": {"TLS_CERT_FILE": crt},
                "mismatched key": {"TLS_CERT_FILE": crt, "TLS_KEY_FILE": other_key},
                "missing file": {"TLS_CERT_FILE": tmp_path / "nope.crt", "TLS_KEY_FILE": key}}[which]
    env = {**os.environ, "APPLIANCE_CONFIG": "/dev/null", "APPLIANCE_DATA_DIR": str(tmp_path / "d"),
           "APPLIANCE_HTTP_PORT": "0", **{f"APPLIANCE_{k}": str(v) for k, v in settings.items()}}
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", "http"], env=env,
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "tls_" in proc.stderr or "TLS certificate" in proc.stderr, proc.stderr


def test_session_cookie_under_https_is_host_prefixed_and_secure(app):
    r = requests.post(app.url + "/api/login", json={"username": "admin", "password": app.admin_password})
    header = r.headers["Set-Cookie"]
    assert header.startswith("__Host-appliance_session="), header
    flags = {part.strip().split("=")[0].lower() for part in header.split(";")}
    assert {"secure", "httponly", "path"} <= flags and "domain" not in flags and "Path=/" in header
    token = r.json()["token"]
    # only the __Host- name is read under HTTPS: the plain name (which a sibling
    # site could plant) is no credential
    url = app.url + "/sse/logs"
    with requests.get(url, cookies={"__Host-appliance_session": token}, stream=True, timeout=10) as sse:
        assert sse.status_code == 200
    assert requests.get(url, cookies={"appliance_session": token}, timeout=10).status_code == 401
