"""The gateway's two key pairs, generated once into ``<data_dir>/ssh/`` (0600) and kept.

- ``host_ed25519_key``: the gateway's host key, what clients pin in
  known_hosts. Never regenerated, so a restart or upgrade shows no
  "host key changed" warning.
- ``guest_access_key``: how the gateway logs in to a guest's sshd on the
  user's behalf. The core writes its public half into root's authorized_keys
  of every guest at each start, restricted with ``from="<bridge address>"``
  so it only works from the host itself.

Both are created atomically (appliance.keep): the core and the gateway may
race to create them and both end up with the same key.
"""
from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from appliance.keep import read_or_create

HOST_KEY = "host_ed25519_key"
GUEST_ACCESS_KEY = "guest_access_key"
GUEST_KEY_COMMENT = "appliance-ssh-gateway"


def key_dir(config) -> Path:
    return config.data_path / "ssh"


def _new_private_key() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())


def private_key_pem(config, name: str) -> bytes:
    directory = key_dir(config)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return read_or_create(directory / name, _new_private_key)


def public_line(pem: bytes, comment: str = "") -> str:
    key = serialization.load_ssh_private_key(pem, password=None)
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}".rstrip()


def guest_authorized_line(config, gateway_address: str) -> str:
    """The authorized_keys line that lets the gateway into a guest as root,
    from ``gateway_address`` only (the host's address on the guest bridge)."""
    pem = private_key_pem(config, GUEST_ACCESS_KEY)
    return f'from="{gateway_address}" {public_line(pem, GUEST_KEY_COMMENT)}'
