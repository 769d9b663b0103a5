"""SSH public key validation and fingerprints (docs/compute.md "SSH keys").

A key must be one line ``<type> <base64> [comment]`` of an accepted type, the
type inside the blob must match the one outside, and the key must parse
completely (``cryptography`` checks RSA sizes and that ECDSA points lie on
their curve). RSA keys need at least 2048 bits.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from appliance.errors import Invalid

TYPES = ("ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")
MIN_RSA_BITS = 2048
MAX_KEY_CHARS = 16 * 1024


@dataclass(frozen=True)
class ParsedKey:
    type: str
    blob: bytes
    comment: str

    @property
    def fingerprint(self) -> str:
        """``SHA256:...`` exactly as ``ssh-keygen -l`` prints it."""
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    @property
    def line(self) -> str:
        """The canonical authorized_keys line."""
        b64 = base64.b64encode(self.blob).decode()
        return f"{self.type} {b64} {self.comment}".rstrip()


def parse(text: str) -> ParsedKey:
    if not isinstance(text, str) or not text.strip():
        raise Invalid("public_key is required")
    if len(text) > MAX_KEY_CHARS:
        raise Invalid(f"public_key must be at most {MAX_KEY_CHARS} characters")
    text = text.strip()
    if "\n" in text or "\r" in text:
        raise Invalid("public_key must be a single line")
    parts = text.split(None, 2)
    if len(parts) < 2:
        raise Invalid("public_key must look like '<type> <base64> [comment]'")
    kind, b64 = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) > 2 else ""
    if kind not in TYPES:
        raise Invalid(f"public_key type {kind!r} is not accepted (accepted: {', '.join(TYPES)})")
    try:
        blob = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid("public_key is not valid base64") from None
    if _blob_type(blob) != kind:
        raise Invalid("public_key type does not match the key data")
    try:
        key = load_ssh_public_key(f"{kind} {b64}".encode())
    except (ValueError, TypeError) as e:
        raise Invalid(f"public_key does not parse: {e}") from None
    except Exception:  # cryptography raises UnsupportedAlgorithm and friends
        raise Invalid("public_key does not parse") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise Invalid(f"RSA keys must have at least {MIN_RSA_BITS} bits (this one has {key.key_size})")
    if isinstance(key, ec.EllipticCurvePublicKey):
        expected = {"ecdsa-sha2-nistp256": "secp256r1", "ecdsa-sha2-nistp384": "secp384r1",
                    "ecdsa-sha2-nistp521": "secp521r1"}[kind]
        if key.curve.name != expected:
            raise Invalid("public_key curve does not match its type")
    return ParsedKey(kind, blob, "".join(c for c in comment if c.isprintable()))


def _blob_type(blob: bytes) -> str | None:
    if len(blob) < 4:
        return None
    n = int.from_bytes(blob[:4], "big")
    if n > 64 or len(blob) < 4 + n:
        return None
    try:
        return blob[4:4 + n].decode("ascii")
    except UnicodeDecodeError:
        return None
