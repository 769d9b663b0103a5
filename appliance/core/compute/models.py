"""Compute tables: containers and SSH keys (guests themselves live in the driver)."""
from __future__ import annotations

import json
import string

import peewee as pw

from appliance.core import db
from appliance.core.db import BaseModel, User, now

# Container ids name the guest, its domain, veth and volume, and a host name
# label: lowercase letters and digits only, 8 of them (36^8 ~ 2.8e12).
CONTAINER_ID_ALPHABET = string.ascii_lowercase + string.digits
CONTAINER_ID_LENGTH = 8
KEY_ID_LENGTH = 8

PENDING, INITIALIZING, RUNNING, STOPPED, ERROR = "pending", "initializing", "running", "stopped", "error"
# Statuses in which the guest is meant to run (the core resumes a start that
# a core restart interrupted).
WANTS_RUNNING = (PENDING, INITIALIZING, RUNNING)


class Container(BaseModel):
    id = pw.AutoField()  # what peewee adds when a model has no primary key; named for the type checker
    public_id = pw.CharField(max_length=16, unique=True)
    # ON DELETE CASCADE: a user removed outside the core (CLI) takes their rows
    # along; the core's sweep then destroys the guests left without a row.
    owner = pw.ForeignKeyField(User, backref="containers", on_delete="CASCADE")
    owner_id: int  # peewee's accessor for the key column, declared for the type checker
    name = pw.CharField(max_length=63)
    status = pw.CharField(max_length=16, default=PENDING)
    error = pw.TextField(null=True)
    instance_type = pw.CharField(max_length=16)
    memory_mb = pw.IntegerField()
    cpus = pw.FloatField()
    storage_gb = pw.IntegerField()
    ip = pw.CharField(max_length=45, unique=True)
    ssh_enabled = pw.BooleanField(default=False)
    https_enabled = pw.BooleanField(default=False)
    mount_paths = pw.TextField(default='["/root"]')     # JSON list
    # The public keys selected at creation, copied: deleting a key later
    # leaves the container (and its next start) alone.
    authorized_keys = pw.TextField(default="[]")        # JSON list
    key_ids = pw.TextField(default="[]")                # JSON list, for reference
    # True once the guest's volume exists (first successful spawn).
    provisioned = pw.BooleanField(default=False)
    # The host (Config.node_name) whose core runs the guest and holds its
    # volume; set at placement and never changed. "" only in a database from
    # before hosts were recorded: the first core to start there adopts it.
    host = pw.CharField(max_length=64, default="", index=True)
    created_at = pw.BigIntegerField(default=now)

    class Meta:
        # Placement's per-host sums read this index only, never the table. A
        # database from before it gets it at open (create_tables(safe=True)).
        indexes = ((("host", "cpus", "memory_mb"), False),)

    @property
    def mounts(self) -> list[str]:
        return json.loads(self.mount_paths)

    @property
    def keys(self) -> list[str]:
        return json.loads(self.authorized_keys)


class SshKey(BaseModel):
    id = pw.AutoField()  # what peewee adds when a model has no primary key; named for the type checker
    public_id = pw.CharField(max_length=16, unique=True)
    owner = pw.ForeignKeyField(User, backref="ssh_keys", on_delete="CASCADE")
    name = pw.CharField(max_length=100)
    public_key = pw.TextField()
    fingerprint = pw.CharField(max_length=64)
    created_at = pw.BigIntegerField(default=now)

    class Meta:
        table_name = "ssh_key"
        indexes = ((("owner", "fingerprint"), True),)


db.register(Container, SshKey)
