"""Helpers shared by the storage integration tests (real curl, real HTTP); no tests here."""
from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
from pathlib import Path

_ns = itertools.count()


def unique_ns(prefix: str = "ns") -> str:
    import os
    return f"{prefix}-{os.getpid()}-{next(_ns)}"


def curl_upload(client, path: Path, namespace: str | None = "default", overwrite: bool | None = None,
                filename: str | None = None, headers: dict | None = None, token: str | None = "") -> tuple[int, dict]:
    """POST /storage/upload with ``curl -F file=@path`` -> (status, json body)."""
    query = []
    if namespace is not None:
        query.append(f"namespace={namespace}")
    if overwrite is not None:
        query.append(f"overwrite={'true' if overwrite else 'false'}")
    url = client.base + "/storage/upload" + ("?" + "&".join(query) if query else "")
    cmd = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}"]
    token = client.token if token == "" else token
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    for key, value in (headers or {}).items():
        cmd += ["-H", f"{key}: {value}"]
    spec = f"file=@{path}" + (f";filename={filename}" if filename else "")
    cmd += ["-F", spec, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    body, _, code = out.stdout.rpartition("\n")
    return int(code), (json.loads(body) if body.strip() else {})


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def upload(client, namespace: str, name: str, data: bytes, overwrite: bool = False):
    """Multipart upload with requests (any file name, any bytes)."""
    return client.post("/storage/upload", params={"namespace": namespace, "overwrite": str(overwrite).lower()},
                       files={"file": (name, data)})


def refused_mid_stream(stdout: str, text: str, local_io: str, status: int = 507) -> bool:
    """curl's output (``-w '\\n%{http_code}'``) for an upload the core refused (``status``)
    while its bytes streamed.

    With every byte over gRPC (storage_local_io=false) grpcio's asyncio client
    sometimes replaces the core's early status with INTERNAL "Internal error
    from Core" when a write races it (grpc/grpc#36066, fix pending upstream in
    grpc/grpc#43486): the gateway then answers 500. The upload still fails
    whole; the callers go on to check that nothing partial is left."""
    if stdout.endswith(f"\n{status}") and text in stdout:
        return True
    return local_io == "false" and stdout.endswith("\n500") and "Internal error from Core" in stdout
