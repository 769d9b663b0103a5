"""Where file content lives: the seam between the storage flow and a blob store.

``open_store(config)`` picks the store by ``config.storage_backend``:

- ``local``: blobs on this host's disk (``local.LocalStore`` over blobs.BlobStore);
- ``seaweedfs``: blobs on a SeaweedFS filer (``seaweed.SeaweedStore``).

Both give the upload and download flows of upload.py and servicer.py the same
shape (docs/seaweedfs-store.md):

- ``new_writer()`` -> a writer: ``write(data)``, ``advance(received)`` (bytes
  a gateway wrote itself), ``local_size()``, ``refuse()``, ``commit()`` -> the
  blob id once the bytes are durable, ``discard()``; ``direct_metadata()`` the
  initial metadata that lets a gateway on this host move the bytes itself;
- ``open(blob_id)`` -> a reader (FileNotFoundError if there is no such
  blob): ``size``, ``chunks(first, end)``, ``direct(meta)`` fills the FileMeta
  fields of a direct download, ``close()``;
- ``remove(blob_ids)``, ``recover(live)`` at start-up, ``start()``/``stop()``
  for background work (the orphan sweep), ``require_free(size, reserve)``
  before and while bytes arrive, ``status()`` for /storage/status and health.

The crash ordering is the same on both: bytes durable -> row committed ->
answer; delete the row, then the blob; a blob without a row is swept.
"""
from __future__ import annotations

from appliance.config import Config
from appliance.core.storage.backends.local import LocalStore
from appliance.core.storage.backends.seaweed import SeaweedStore
from appliance.core.storage.backends.status import StoreStatus

Store = LocalStore | SeaweedStore

__all__ = ["Store", "StoreStatus", "open_store"]


def open_store(config: Config) -> Store:
    if config.storage_backend == "seaweedfs":
        return SeaweedStore(config)
    return LocalStore(config)
