"""Batches on the gateway's call stream: limits and splitting shared by both
ends (appliance/http/multiplexed.py, appliance/core/multiplexer.py)."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

# The gRPC message limit set on both ends (core server, gateway channel).
MAX_MESSAGE = 8 * 1024 * 1024
# A batch is closed before it grows past this (well under MAX_MESSAGE).
BATCH_BYTES = 2 * 1024 * 1024
# One call or reply larger than this could not travel even alone: refused
# RESOURCE_EXHAUSTED, as a unary call over the limit would be.
MAX_CARRIED = 7 * 1024 * 1024

T = TypeVar("T")


def take(queue: list[T], size: Callable[[T], int], limit: int = BATCH_BYTES) -> list[T]:
    """Remove and return the leading items of *queue* that fit in *limit*
    bytes; at least one, so an item larger than the limit travels alone."""
    total, count = 0, 0
    for item in queue:
        total += size(item)
        if count and total > limit:
            break
        count += 1
    batch = queue[:count]
    del queue[:count]
    return batch
