"""SSH public key parsing, type rules and fingerprints."""
import base64
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from appliance.core.compute import sshkeys
from appliance.errors import Invalid


def openssh(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


def ssh_dss_line() -> str:
    """A DSA public key line, encoded here (type, p, q, g, y as SSH strings):
    cryptography deprecates writing DSA keys in the SSH format."""
    def string(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    def mpint(n: int) -> bytes:
        return string(n.to_bytes(n.bit_length() // 8 + 1, "big"))

    numbers = dsa.generate_private_key(1024).public_key().public_numbers()
    p = numbers.parameter_numbers
    blob = string(b"ssh-dss") + b"".join(mpint(n) for n in (p.p, p.q, p.g, numbers.y))
    return "ssh-dss " + base64.b64encode(blob).decode()


@pytest.mark.parametrize("make, kind", [
    (lambda: ed25519.Ed25519PrivateKey.generate(), "ssh-ed25519"),
    (lambda: rsa.generate_private_key(65537, 2048), "ssh-rsa"),
    (lambda: ec.generate_private_key(ec.SECP256R1()), "ecdsa-sha2-nistp256"),
    (lambda: ec.generate_private_key(ec.SECP384R1()), "ecdsa-sha2-nistp384"),
    (lambda: ec.generate_private_key(ec.SECP521R1()), "ecdsa-sha2-nistp521"),
])
def test_accepted_types(make, kind, tmp_path):
    line = openssh(make()) + " me@laptop"
    key = sshkeys.parse("  " + line + "\n")
    assert key.type == kind and key.line == line and key.comment == "me@laptop"
    (tmp_path / "k.pub").write_text(line + "\n")
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "k.pub")], capture_output=True, text=True)
    assert out.stdout.split()[1] == key.fingerprint


def test_refused_keys():
    with pytest.raises(Invalid, match="2048"):
        sshkeys.parse(openssh(rsa.generate_private_key(65537, 1024)))
    with pytest.raises(Invalid, match="not accepted"):
        sshkeys.parse(ssh_dss_line())
    ed = openssh(ed25519.Ed25519PrivateKey.generate()).split()[1]
    with pytest.raises(Invalid, match="match"):
        sshkeys.parse(f"ssh-rsa {ed}")
    with pytest.raises(Invalid, match="parse"):
        sshkeys.parse("ssh-ed25519 " + base64.b64encode(b"\0\0\0\x0bssh-ed25519\0\0\0\x03abc").decode())
    p256 = openssh(ec.generate_private_key(ec.SECP256R1())).split()[1]
    with pytest.raises(Invalid):
        sshkeys.parse(f"ecdsa-sha2-nistp384 {p256}")
    for bad in ("", "   ", "ssh-ed25519", "ssh-ed25519 ***", "x" * 20000):
        with pytest.raises(Invalid):
            sshkeys.parse(bad)
