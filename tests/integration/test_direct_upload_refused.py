"""A direct upload to SeaweedFS (the gateway PUTs to the filer with the core's token,
appliance/http/upload_call.py) that the core refuses while the filer is still storing it:
the core's own deletes may reach the filer before the blob does (seen under load: the
blob stayed until the sweep), so the core's refusal carries a token to DELETE that one
blob (``x-upload-discarded``, none once a row names the blob) and the gateway deletes
what its finished PUT stored with it.

The real filer and the core's real writer and tokens; in place of the core's call, one
that answers as the core does once the upload's end arrives (the core, with its own
deletes, is tested end to end in test_storage_limits.py)."""
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
    it reads the messages up to the upload's end, then ends with *code* and *trailing*."""

    def __init__(self, messages, metadata, code: grpc.StatusCode, trailing):
        self.metadata = (("x-upload-ready", "1"),) + metadata
        self.task = asyncio.ensure_future(self._run(messages, code, trailing))

    async def _run(self, messages, code, trailing):
        async for message in messages:
            if message.WhichOneof("part") == "end":
                break
        raise grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), "the core's answer")

    async def initial_metadata(self):
        return self.metadata

    def __await__(self):
        return self.task.__await__()

    def cancel(self) -> None:
        self.task.cancel()


def new_writer(weed) -> SeaweedWriter:
    return SeaweedWriter(SeaweedStore(Config(
        data_dir="/tmp/unused", storage_backend="seaweedfs",
        seaweedfs_filer=weed.filer_url, seaweedfs_jwt_key_file=str(weed.jwt_key_file))))


def upload_answered(writer: SeaweedWriter, code: grpc.StatusCode, named: bool) -> grpc.aio.AioRpcError:
    """A 300 KB direct upload the core answers with *code*; the trailing metadata the core
    adds to it, given whether a row ``named`` the blob."""
    trailing = writer.discarded_metadata(lambda blob_id: named)
    handler = SimpleNamespace(config=SimpleNamespace(max_upload_bytes=0), metadata=lambda: (),
                              call=lambda messages, metadata: CoreCall(messages, writer.direct_metadata(), code,
                                                                       trailing))

    async def run():
        call = UploadCall(handler, storage_pb2.UploadHeader(namespace="default", name="f.bin"))
        assert await call.ready() is None and call.filer is not None   # the direct path
        await call.feed(os.urandom(300_000))
        with pytest.raises(grpc.aio.AioRpcError) as answered:
            await call.finish()
        if call.removing is not None:
            await call.removing
        return answered.value

    return asyncio.run(run())


def stored(weed, writer: SeaweedWriter) -> bool:
    url = writer.store.filer.blob_url(writer.blob_id)
    r = requests.head(url, headers=weed.auth(), timeout=10)
    assert r.status_code in (200, 404), r.status_code
    return r.status_code == 200


@pytest.mark.parametrize("code", [grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ALREADY_EXISTS,
                                  grpc.StatusCode.INVALID_ARGUMENT])
def test_a_refusal_after_the_filer_stored_it_removes_the_blob(weed, code):
    writer = new_writer(weed)
    answer = upload_answered(writer, code, named=False)
    assert answer.code() == code and "x-upload-discarded" in dict(answer.trailing_metadata())
    assert not stored(weed, writer)


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_an_error_once_a_row_names_the_blob_leaves_it(weed, code):
    """The core failed after its commit point (none does today): removing the blob would
    lose a stored file, so the core sends no token and the gateway deletes nothing."""
    writer = new_writer(weed)
    answer = upload_answered(writer, code, named=True)
    assert answer.code() == code and "x-upload-discarded" not in dict(answer.trailing_metadata())
    assert stored(weed, writer)


def test_each_token_allows_only_its_own_method_and_blob(weed):
    writer, other = new_writer(weed), new_writer(weed)
    put_token = dict(writer.direct_metadata())["x-upload-token"]
    (_, delete_token), = writer.discarded_metadata(lambda blob_id: False)
    url = writer.store.filer.blob_url(writer.blob_id)
    bearer = lambda token: {"Authorization": f"Bearer {token}"}   # noqa: E731
    assert requests.put(url, data=b"x", headers=bearer(put_token), timeout=10).status_code == 201
    assert requests.delete(url, headers=bearer(put_token), timeout=10).status_code == 401    # PUT only
    assert requests.put(url, data=b"y", headers=bearer(delete_token), timeout=10).status_code == 401
    other_url = other.store.filer.blob_url(other.blob_id)
    requests.put(other_url, data=b"z", headers=weed.auth(), timeout=10).raise_for_status()
    assert requests.delete(other_url, headers=bearer(delete_token), timeout=10).status_code == 401
    assert requests.delete(url, headers=bearer(delete_token), timeout=10).status_code in (200, 202, 204)
    assert not stored(weed, writer) and stored(weed, other)
