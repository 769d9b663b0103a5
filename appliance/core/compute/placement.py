"""Where a new container runs: the host chosen for it (docs/cluster.md "Placement")."""
from __future__ import annotations

from appliance.config import Config


def choose_host(config: Config, cpus: float, memory_mb: int) -> str:
    """The name of the host that will run a container of ``cpus`` and ``memory_mb``.

    A host alone places everything on itself (the filter-and-weigh scheduler
    over the host table replaces this body)."""
    return config.node_name
