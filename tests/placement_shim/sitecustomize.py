"""Tests only (test_cluster_peers.py): a core started with this directory on
PYTHONPATH places a new container on the host named in the file
PEERS_TEST_PLACE_ON_FILE while that file exists, so a test can make the
create-on-another-host path happen whatever the scheduler would choose."""
import os
from pathlib import Path

_file = os.environ.get("PEERS_TEST_PLACE_ON_FILE")
if _file:
    from appliance.core.compute import placement

    _choose = placement.choose_host

    def _pinned(*args, **kwargs):
        try:
            return Path(_file).read_text().strip() or _choose(*args, **kwargs)
        except FileNotFoundError:
            return _choose(*args, **kwargs)

    placement.choose_host = _pinned
