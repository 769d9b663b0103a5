"""The quota's bookkeeping of uploads under way (appliance/core/storage/upload.py):
uploads of unknown size that together outgrow the quota refuse the later ones,
never all at once (seen in the suite: eight concurrent 300 KB uploads against a
1 MB quota, growing in lockstep on SeaweedFS, were all refused). The exact check
at the commit is the integration tests' (test_storage_limits)."""
import pytest

from appliance.config import Config
from appliance.core.storage import upload
from appliance.errors import InsufficientStorage


class _AnyFreeSpace:
    def require_free(self, size: int, reserve: int, what: str = "") -> None:
        pass


@pytest.fixture
def limits(monkeypatch):
    monkeypatch.setattr(upload, "stored_bytes", lambda user_id: 0)
    return upload.UploadLimits(Config(storage_quota_bytes=1_000_000, max_uploads_per_user=10), _AnyFreeSpace())


def test_uploads_growing_together_past_the_quota_refuse_the_later_ones_only(limits):
    tickets = [limits.admit(7) for _ in range(8)]
    for t in tickets:
        t.check_declared(0)   # multipart without a size: unknown
    refused = []
    for received in range(50_000, 300_001, 50_000):   # all grow in lockstep
        for t in tickets:
            if t in refused:
                continue
            try:
                t.update(received)
            except InsufficientStorage:
                refused.append(t)
                t.release()
    kept = [t for t in tickets if t not in refused]
    assert kept == tickets[:3] and set(refused) == set(tickets[3:])
    assert sum(t.counted for t in kept) <= 1_000_000


def test_a_released_upload_frees_its_bytes_for_the_next(limits):
    first, second = limits.admit(7), limits.admit(7)
    first.check_declared(900_000)
    with pytest.raises(InsufficientStorage):
        second.check_declared(200_000)
    first.release()
    second.check_declared(200_000)
    assert limits.held == {7: {second: 200_000}}
    second.release()
    assert limits.held == {}
