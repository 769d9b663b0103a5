"""The cluster CA and the hosts' certificates (docs/cluster-peers.md).

``appliance cluster ca --out DIR`` makes ``DIR/ca.pem`` + ``DIR/ca.key`` once
and keeps them afterwards; ``appliance cluster cert`` signs a host's
certificate with it: subject CN = the host's name, SANs DNS:<name> and
IP:<each address>, usable as a TLS server and client certificate (the cores
authenticate each other both ways). Keys are EC P-256, written 0600 and
atomically (a crash leaves the old file or none, never half a key).
"""
from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT, CA_KEY = "ca.pem", "ca.key"
CA_DAYS = 3650
HOST_DAYS = 825
# A host certificate this close to its end is issued again by ``cert``.
RENEW_DAYS = 30
CA_NAME = "appliance cluster CA"


@dataclass
class Written:
    paths: list[Path]
    created: bool   # False: valid files were there and were kept


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_ca(out: Path) -> Written:
    """The cluster CA in ``out`` (created once; existing files are kept)."""
    out = Path(out)
    cert_path, key_path = out / CA_CERT, out / CA_KEY
    if cert_path.exists() and key_path.exists():
        load_ca(out)  # refuse a broken pair rather than keep it silently
        return Written([cert_path, key_path], created=False)
    if cert_path.exists() or key_path.exists():
        raise ValueError(f"{out} holds only one of {CA_CERT} and {CA_KEY}: remove it or restore the other")
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, _cert_pem(cert), 0o644)
    return Written([cert_path, key_path], created=True)


def load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    directory = Path(directory)
    cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
    key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise ValueError(f"{directory / CA_KEY} is not the key of {directory / CA_CERT}")
    return cert, key


def host_paths(out: Path, name: str) -> tuple[Path, Path]:
    return Path(out) / f"{name}.pem", Path(out) / f"{name}.key"


def _sans(name: str, ips: list[str]) -> list[x509.GeneralName]:
    return [x509.DNSName(name), *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips)]


def _still_good(cert_path: Path, key_path: Path, ca: x509.Certificate, name: str, ips: list[str]) -> bool:
    """An existing host certificate signed by ``ca`` for exactly these names, not near its end."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    return (key.public_key() == cert.public_key()
            and cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
            and set(sans) == set(_sans(name, ips))
            and cert.not_valid_after_utc - _now() > datetime.timedelta(days=RENEW_DAYS))


def make_host_cert(ca_dir: Path, name: str, ips: list[str], out: Path) -> Written:
    """``out/<name>.pem`` + ``out/<name>.key`` signed by the CA in ``ca_dir``;
    kept when the existing pair already says the same and is not near its end."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"--name must be a host name, got {name!r}")
    for ip in ips:
        ipaddress.ip_address(ip)  # ValueError names the bad address
    ca_cert, ca_key = load_ca(Path(ca_dir))
    cert_path, key_path = host_paths(out, name)
    if _still_good(cert_path, key_path, ca_cert, name, ips):
        return Written([cert_path, key_path], created=False)
    Path(out).mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(min(now + datetime.timedelta(days=HOST_DAYS), ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(_sans(name, ips)), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, _cert_pem(cert), 0o644)
    return Written([cert_path, key_path], created=True)
