"""What a blob store reports for /storage/status and the health of the core."""
from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import SHOWN_UNAVAILABLE, Unavailable


@dataclass
class StoreStatus:
    backend: str
    servers_live: int
    servers_known: int
    capacity: int
    used: int
    free: int
    # Uploads can be stored now (on SeaweedFS: a master leads and a volume server lives).
    writable: bool = True
    # Stored files can be read now.
    readable: bool = True
    problem: str = ""


class StoreUnavailable(Unavailable):
    """The blob store cannot take this now (503 with this message)."""

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (*super().trailing_metadata(), SHOWN_UNAVAILABLE)
