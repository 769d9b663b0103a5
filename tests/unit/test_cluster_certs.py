"""`appliance cluster ca` / `appliance cluster cert` (core/fleet/certs.py), and a
core that refuses cluster_listen without its certificates."""
from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance import cli


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["--config", "/dev/null", "cluster", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_the_ca_is_made_once_and_kept(tmp_path, capsys):
    code, out, _ = run(capsys, "ca", "--out", str(tmp_path / "ca"))
    assert code == 0 and out.split() == ["created", str(tmp_path / "ca" / "ca.pem"),
                                         "created", str(tmp_path / "ca" / "ca.key")]
    pem, key = (tmp_path / "ca" / "ca.pem").read_bytes(), (tmp_path / "ca" / "ca.key").read_bytes()
    assert mode(tmp_path / "ca" / "ca.key") == 0o600
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    code, out, _ = run(capsys, "ca", "--out", str(tmp_path / "ca"))
    assert code == 0 and out.split()[::2] == ["kept", "kept"]
    assert (tmp_path / "ca" / "ca.pem").read_bytes() == pem and (tmp_path / "ca" / "ca.key").read_bytes() == key


def test_half_a_ca_is_refused_not_replaced(tmp_path, capsys):
    run(capsys, "ca", "--out", str(tmp_path))
    (tmp_path / "ca.key").unlink()
    code, _, err = run(capsys, "ca", "--out", str(tmp_path))
    assert code == 1 and "only one of ca.pem and ca.key" in err
    assert not (tmp_path / "ca.key").exists()


def test_a_host_certificate_names_the_host_and_its_addresses(tmp_path, capsys):
    run(capsys, "ca", "--out", str(tmp_path / "ca"))
    code, out, _ = run(capsys, "cert", "--ca", str(tmp_path / "ca"), "--name", "node-b", "--ip", "10.231.0.2",
                       "--ip", "fd00::2", "--out", str(tmp_path / "hosts"))
    assert code == 0 and out.split()[::2] == ["created", "created"]
    cert = x509.load_pem_x509_certificate((tmp_path / "hosts" / "node-b.pem").read_bytes())
    key = serialization.load_pem_private_key((tmp_path / "hosts" / "node-b.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert key.public_key() == cert.public_key()
    assert mode(tmp_path / "hosts" / "node-b.key") == 0o600
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "node-b"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["node-b"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.231.0.2"),
                                                        ipaddress.ip_address("fd00::2")]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_cert_is_kept_when_unchanged_and_issued_again_when_not(tmp_path, capsys):
    run(capsys, "ca", "--out", str(tmp_path / "ca"))
    args = ["cert", "--ca", str(tmp_path / "ca"), "--name", "a", "--ip", "10.0.0.1", "--out", str(tmp_path)]
    run(capsys, *args)
    first = (tmp_path / "a.pem").read_bytes()
    assert run(capsys, *args)[1].split()[::2] == ["kept", "kept"]
    assert (tmp_path / "a.pem").read_bytes() == first
    # another address: a new certificate
    assert run(capsys, *args[:-4], "--ip", "10.0.0.9", "--out", str(tmp_path))[1].split()[::2] == ["created"] * 2
    # another CA (the cluster's CA was remade): a new certificate signed by it
    run(capsys, "ca", "--out", str(tmp_path / "ca2"))
    run(capsys, "cert", "--ca", str(tmp_path / "ca2"), "--name", "a", "--ip", "10.0.0.9", "--out", str(tmp_path))
    ca2 = x509.load_pem_x509_certificate((tmp_path / "ca2" / "ca.pem").read_bytes())
    x509.load_pem_x509_certificate((tmp_path / "a.pem").read_bytes()).verify_directly_issued_by(ca2)


@pytest.mark.parametrize("args, needle", [
    (["--name", "a", "--ip", "10.0.0.300"], "10.0.0.300"),
    (["--name", "../a", "--ip", "10.0.0.1"], "--name must be a host name"),
])
def test_bad_cert_arguments_are_refused(tmp_path, capsys, args, needle):
    run(capsys, "ca", "--out", str(tmp_path / "ca"))
    code, _, err = run(capsys, "cert", "--ca", str(tmp_path / "ca"), *args, "--out", str(tmp_path / "out"))
    assert code == 1 and needle in err
    assert not (tmp_path / "out").exists()


def test_cert_without_a_ca_is_refused(tmp_path, capsys):
    code, _, err = run(capsys, "cert", "--ca", str(tmp_path / "none"), "--name", "a", "--out", str(tmp_path))
    assert code == 1 and "ca.pem" in err


@pytest.mark.parametrize("settings, needle", [
    ({}, "cluster_listen is set but cluster_ca_file, cluster_cert_file, cluster_key_file are not"),
    ({"CLUSTER_CA_FILE": "/nonexistent/ca.pem", "CLUSTER_CERT_FILE": "/nonexistent/a.pem",
      "CLUSTER_KEY_FILE": "/nonexistent/a.key"}, "cluster_ca_file: cannot read /nonexistent/ca.pem"),
])
def test_a_core_refuses_cluster_listen_without_its_certificates(tmp_path, settings, needle):
    env = {**os.environ, "APPLIANCE_CONFIG": "/dev/null", "APPLIANCE_DATA_DIR": str(tmp_path / "data"),
           "APPLIANCE_GUEST_DRIVER": "fake", "APPLIANCE_CLUSTER_LISTEN": "127.0.0.1:0",
           **{f"APPLIANCE_{k}": v for k, v in settings.items()}}
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "core"], env=env, capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 2 and needle in out.stderr, out.stderr
    assert not (tmp_path / "data" / "core.sock").exists()
