"""The one place a guest driver is chosen: ``Config.guest_driver`` names a
class here, built with its ``from_config``."""
from __future__ import annotations

import importlib

from appliance.drivers.base import GuestDriver

# name -> (module, class); imported on use, so the fake never loads libvirt code
DRIVERS = {
    "lxc": ("appliance.drivers.lxc.driver", "LxcDriver"),
    "fake": ("appliance.drivers.fake", "FakeDriver"),
}


def make_driver(config) -> GuestDriver:
    try:
        module, name = DRIVERS[config.guest_driver]
    except KeyError:
        raise ValueError(f"guest_driver must be one of {', '.join(map(repr, DRIVERS))}, "
                         f"not {config.guest_driver!r}") from None
    return getattr(importlib.import_module(module), name).from_config(config)
