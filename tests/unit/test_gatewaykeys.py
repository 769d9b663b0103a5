"""The gateway's guest-access key line, and that the module shared by the
core and the SSH gateway stands on its own."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

from appliance import gatewaykeys
from appliance.config import Config


def test_guest_line_allows_the_key_from_the_given_address_only(tmp_path):
    config = Config(data_dir=str(tmp_path))
    line = gatewaykeys.guest_authorized_line(config, "10.9.0.1")
    options, kind, blob, comment = line.split(" ")
    assert options == 'from="10.9.0.1"' and kind == "ssh-ed25519" and comment == gatewaykeys.GUEST_KEY_COMMENT
    # The same key every time (kept 0600), only the address follows the caller.
    assert gatewaykeys.guest_authorized_line(config, "10.8.0.1") == f'from="10.8.0.1" {kind} {blob} {comment}'
    key = gatewaykeys.key_dir(config) / gatewaykeys.GUEST_ACCESS_KEY
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def test_gatewaykeys_imports_neither_host_nor_core():
    code = ("import sys, appliance.gatewaykeys\n"
            "print(sorted(m for m in sys.modules if m.startswith(('appliance.host', 'appliance.core'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
