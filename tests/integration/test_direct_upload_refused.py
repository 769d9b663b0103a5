"""A direct upload to SeaweedFS (the gateway PUTs to the filer with the core's token,
appliance/http/upload_call.py) that the core refuses while the filer is still storing it:
the core's own deletes may reach the filer before the blob does (seen under load: the
blob stayed until the sweep), so the gateway deletes what its finished PUT stored - but
only on a refusal, never on an answer that could follow the core's commit.

The real filer and the core's real token; in place of the core's call, one that answers
as the core does once the upload's end arrives (the core, with its own deletes, is
tested end to end in test_storage_limits.py)."""
from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace

import grpc
import pytest
import requests
from seaweed_support import seaweedfs  # noqa: F401  (the fixture)

from appliance.config import Config
from appliance.core.storage.backends.seaweed import SeaweedStore, SeaweedWriter
from appliance.http.upload_call import UploadCall
from appliance.v1 import storage_pb2


@pytest.fixture(scope="module")
def weed(seaweedfs):   # noqa: F811
    return seaweedfs()


class CoreCall:
    """The core's side of one Upload call: ready for a direct upload to *metadata*'s URL,
    it reads the messages up to the upload's end, then ends with *code*."""

    def __init__(self, messages, metadata, code: grpc.StatusCode):
        self.metadata = (("x-upload-ready", "1"),) + metadata
        self.task = asyncio.ensure_future(self._run(messages, code))

    async def _run(self, messages, code):
        async for message in messages:
            if message.WhichOneof("part") == "end":
                break
        raise grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "the core's answer")

    async def initial_metadata(self):
        return self.metadata

    def __await__(self):
        return self.task.__await__()

    def cancel(self) -> None:
        self.task.cancel()


def upload_answered(weed, code: grpc.StatusCode) -> tuple[SeaweedWriter, grpc.aio.AioRpcError]:
    store = SeaweedStore(Config(data_dir="/tmp/unused", storage_backend="seaweedfs",
                                seaweedfs_filer=weed.filer_url, seaweedfs_jwt_key_file=str(weed.jwt_key_file)))
    writer = SeaweedWriter(store)
    handler = SimpleNamespace(config=SimpleNamespace(max_upload_bytes=0), metadata=lambda: (),
                              call=lambda messages, metadata: CoreCall(messages, writer.direct_metadata(), code))

    async def run():
        call = UploadCall(handler, storage_pb2.UploadHeader(namespace="default", name="f.bin"))
        assert await call.ready() is None and call.filer is not None   # the direct path
        await call.feed(os.urandom(300_000))
        with pytest.raises(grpc.aio.AioRpcError) as answered:
            await call.finish()
        if call.removing is not None:
            await call.removing
        return answered.value

    return writer, asyncio.run(run())


def stored(weed, writer: SeaweedWriter) -> bool:
    url = writer.store.filer.blob_url(writer.blob_id)
    r = requests.head(url, headers=weed.auth(), timeout=10)
    assert r.status_code in (200, 404), r.status_code
    return r.status_code == 200


@pytest.mark.parametrize("code", [grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ALREADY_EXISTS,
                                  grpc.StatusCode.INVALID_ARGUMENT])
def test_a_refusal_after_the_filer_stored_it_removes_the_blob(weed, code):
    writer, answer = upload_answered(weed, code)
    assert answer.code() == code
    assert not stored(weed, writer)


@pytest.mark.parametrize("code", [grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL,
                                  grpc.StatusCode.UNAVAILABLE])
def test_an_answer_that_may_follow_the_commit_leaves_the_blob(weed, code):
    """The core may have committed a row naming the blob (then failed, or the call was cut):
    removing it would lose a stored file; the core's discard and the sweep judge instead."""
    writer, answer = upload_answered(weed, code)
    assert answer.code() == code
    assert stored(weed, writer)
