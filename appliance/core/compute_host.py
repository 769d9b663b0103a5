"""Host preparation for compute, run by ``appliance up`` (``cli.PREPARE_STEPS``).

libvirtd (started by hand when no service manager does), the guest image
(debootstrap, ~1 min once, then cached under ``image_dir``) and the guests'
bridge with NAT. A failure is reported and ``up`` goes on: auth and storage
still start, and compute calls answer with the reason until it is fixed
(the core retries the libvirtd and bridge part on its own).
"""
from __future__ import annotations

import sys

from appliance.cli import PREPARE_STEPS


def prepare(cfg) -> None:
    if cfg.guest_driver != "lxc":
        return
    try:
        from appliance.core.drivers.lxc import LxcDriver
        LxcDriver.from_config(cfg).prepare_host(build_image=True)
    except Exception as e:  # noqa: BLE001 - everything else must still come up
        print(f"compute: host preparation failed: {e}\n"
              "compute: containers cannot start until this is fixed; auth and storage run anyway",
              file=sys.stderr)


PREPARE_STEPS.append(prepare)
