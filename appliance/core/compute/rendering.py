"""Rows -> protocol messages for the compute RPCs (no I/O: the live readings
are taken by the caller)."""
from __future__ import annotations

from datetime import UTC, datetime

from appliance.config import Config
from appliance.core.compute.models import ERROR, Container, SshKey
from appliance.core.db import User
from appliance.drivers.base import GuestUsage
from appliance.v1 import compute_pb2


def rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Shown, never stored: the container's host is down (no heartbeat), so nobody
# can say what its guest does; the stored status stays for when it returns.
UNKNOWN = "unknown"


def container_message(row: Container, config: Config, usage: GuestUsage | None,
                      host_down: bool = False) -> compute_pb2.Container:
    msg = compute_pb2.Container(
        id=row.public_id, name=row.name, status=UNKNOWN if host_down else row.status,
        hostname=f"{row.public_id}.{config.compute_domain}",
        ssh_command=f"ssh {row.public_id}@{config.public_host} -p {config.ssh_port}",
        memory_mb=row.memory_mb, storage_gb=row.storage_gb, instance_type=row.instance_type,
        created_at=rfc3339(row.created_at), ssh_enabled=row.ssh_enabled,
        https_enabled=row.https_enabled, external_ip=row.ip)
    if row.error and row.status == ERROR and not host_down:
        msg.error = row.error
    if usage is not None:
        msg.memory_used_mb = usage.memory_used_bytes // (1 << 20)
        msg.storage_used_gb = round(usage.storage_used_bytes / (1 << 30), 3)
    return msg


def host_of(row: Container, config: Config) -> str:
    """The host a container's guest lives on ("" in a row from before hosts
    were recorded, until a core adopts it: a host alone's own)."""
    return row.host or config.node_name


def admin_message(msg: compute_pb2.Container, row: Container, owner: User,
                  config: Config) -> compute_pb2.AdminContainer:
    """*msg* (the container as its owner sees it) plus who owns it and where it runs.
    AdminContainer repeats Container's field numbers, so the bytes carry over."""
    out = compute_pb2.AdminContainer.FromString(msg.SerializeToString())
    out.owner, out.user_id, out.host = owner.username, owner.public_id, host_of(row, config)
    return out


def key_message(k: SshKey) -> compute_pb2.SshKey:
    return compute_pb2.SshKey(id=k.public_id, name=k.name, public_key=k.public_key,
                              fingerprint=k.fingerprint, created_at=rfc3339(k.created_at))
