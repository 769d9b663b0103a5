"""The client's HTTP underneath (appliance/client/api.py, spliced.py) against real local servers:
TLS verified against the system's CAs / SSL_CERT_FILE, a kept-alive connection the server dropped
replaced, a download's bytes spliced by the kernel into a file."""
import datetime
import http.server
import ipaddress
import os
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.client import spliced
from appliance.client.api import Api, ApiError


class JsonHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    drop_after_answer = False

    def do_GET(self):
        body = b'{"path": "%s"}' % self.path.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = self.drop_after_answer   # closed without saying so: a stale keep-alive

    def log_message(self, *args):
        pass


def _serve(handler, tls: ssl.SSLContext | None = None) -> tuple[http.server.HTTPServer, list]:
    connections: list = []

    class Server(http.server.ThreadingHTTPServer):
        def get_request(self):
            conn, addr = super().get_request()
            connections.append(addr)
            return conn, addr

    server = Server(("127.0.0.1", 0), handler)
    if tls:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, connections


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_https_is_verified_and_ssl_cert_file_is_honoured(tmp_path, monkeypatch):
    cert_file, key_file = _self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    server, _ = _serve(JsonHandler, tls)
    url = f"https://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(ApiError, match="CERTIFICATE_VERIFY_FAILED") as refused:
            Api(url, "t").get("/storage/namespaces")
        assert refused.value.code == 1
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
        answer = Api(url, "t").get("/storage/namespaces", namespace="a b")
        assert answer == {"path": "/storage/namespaces?namespace=a+b"}
    finally:
        server.shutdown()


def test_a_dropped_keep_alive_connection_is_replaced_once():
    class Dropping(JsonHandler):
        drop_after_answer = True

    server, connections = _serve(Dropping)
    api = Api(f"http://127.0.0.1:{server.server_address[1]}/prefix")
    try:
        assert api.get("/one") == {"path": "/prefix/one"}
        assert api.get("/two") == {"path": "/prefix/two"}   # the first connection was closed under it
        assert len(connections) == 2
    finally:
        server.shutdown()


def test_a_body_spliced_into_a_file_and_a_short_one(tmp_path):
    if not hasattr(os, "splice"):
        pytest.fail("os.splice is Linux's, as this suite's hosts are")
    payload = os.urandom(3 << 20)
    listener = socket.create_server(("127.0.0.1", 0))
    sender = socket.create_connection(listener.getsockname())
    receiver, _ = listener.accept()
    receiver.settimeout(5)   # non-blocking underneath, as http.client's socket is
    threading.Thread(target=lambda: (sender.sendall(payload), sender.close()), daemon=True).start()
    advanced: list[int] = []
    with open(tmp_path / "out", "wb") as out:
        assert spliced.usable(receiver.fileno(), out.fileno())
        got = spliced.receive(receiver.fileno(), out.fileno(), len(payload) + 10, 5.0, advanced.append)
    assert got == len(payload) == sum(advanced)   # the sender stopped short: the count says so
    assert (tmp_path / "out").read_bytes() == payload
    with open(tmp_path / "appended", "ab") as appended:
        assert not spliced.usable(receiver.fileno(), appended.fileno())   # splice refuses O_APPEND
    receiver.close()
    listener.close()
