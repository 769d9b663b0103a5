"""Splitting a queue of messages into batches: shared by both ends of the
gateway's call stream (appliance/http/mux.py, appliance/core/mux.py)."""
from __future__ import annotations

from typing import Callable, Sequence


def fitting(items: Sequence, size: Callable[[object], int], limit: int) -> int:
    """How many leading *items* fit in *limit* bytes; at least one, so an
    item larger than the limit still travels (alone)."""
    total, count = 0, 0
    for item in items:
        total += size(item)
        if count and total > limit:
            break
        count += 1
    return count
