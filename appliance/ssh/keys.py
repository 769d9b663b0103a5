"""The gateway's two key pairs, generated once into ``<data_dir>/ssh/`` (0600) and kept.

- ``host_ed25519_key``: the gateway's host key, what clients pin in
  known_hosts. Never regenerated, so a restart or upgrade shows no
  "host key changed" warning.
- ``guest_access_key``: how the gateway logs in to a guest's sshd on the
  user's behalf. The core writes its public half into root's authorized_keys
  of every guest at each start, restricted with ``from="<bridge address>"``
  so it only works from the host itself.

Both are created atomically (write a temporary file, ``link()`` it into
place): the core and the gateway may race to create them and both end up
with the same key.
"""
from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

HOST_KEY = "host_ed25519_key"
GUEST_ACCESS_KEY = "guest_access_key"
GUEST_KEY_COMMENT = "appliance-ssh-gateway"


def key_dir(config) -> Path:
    return config.data_path / "ssh"


def _read_or_create(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return path.read_bytes()


def private_key_pem(config, name: str) -> bytes:
    return _read_or_create(key_dir(config) / name)


def public_line(pem: bytes, comment: str = "") -> str:
    key = serialization.load_ssh_private_key(pem, password=None)
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}".rstrip()


def guest_authorized_line(config) -> str:
    """The authorized_keys line that lets the gateway into a guest as root."""
    from appliance.core.network import gateway_ip

    pem = private_key_pem(config, GUEST_ACCESS_KEY)
    return f'from="{gateway_ip(config.guest_subnet)}" {public_line(pem, GUEST_KEY_COMMENT)}'
