"""A user's SSH keys: the rules of the key RPCs (name, at most
``MAX_KEYS_PER_USER``, no duplicate fingerprint). Parsing and fingerprints
are ``sshkeys.py``; which keys reach a guest is decided at container
creation (``ssh_key_ids``)."""
from __future__ import annotations

import peewee as pw

from appliance.core.auth import scopes
from appliance.core.compute import rendering, sshkeys
from appliance.core.compute.models import CONTAINER_ID_ALPHABET, KEY_ID_LENGTH, SshKey
from appliance.core.db import database, new_public_id
from appliance.errors import Conflict, Invalid, NotFound
from appliance.v1 import compute_pb2

MAX_KEYS_PER_USER = 10
MAX_KEY_NAME = 100


def list_keys(p) -> compute_pb2.ListSshKeysResponse:
    scopes.require(p, "read", "compute", "keys")
    query = SshKey.select().where(SshKey.owner == p.user.id).order_by(SshKey.id)
    return compute_pb2.ListSshKeysResponse(ssh_keys=[rendering.key_message(k) for k in query])


def create_key(p, name: str, public_key: str) -> compute_pb2.SshKey:
    scopes.require(p, "create", "compute", "keys")
    name = name.strip()
    if not 1 <= len(name) <= MAX_KEY_NAME or not name.isprintable():
        raise Invalid(f"name must be 1-{MAX_KEY_NAME} printable characters")
    key = sshkeys.parse(public_key)
    try:
        with database.atomic():
            owned = SshKey.select().where(SshKey.owner == p.user.id)
            if owned.where(SshKey.fingerprint == key.fingerprint).exists():
                raise Conflict(f"this key is already registered ({key.fingerprint})")
            if owned.count() >= MAX_KEYS_PER_USER:
                raise Conflict(f"at most {MAX_KEYS_PER_USER} SSH keys per user")
            row = SshKey.create(public_id=new_public_id(KEY_ID_LENGTH, CONTAINER_ID_ALPHABET),
                                owner=p.user.id, name=name, public_key=key.line,
                                fingerprint=key.fingerprint)
    except pw.IntegrityError:
        raise Conflict(f"this key is already registered ({key.fingerprint})") from None
    return rendering.key_message(row)


def delete_key(p, key_id: str) -> None:
    scopes.require(p, "delete", "compute", "keys")
    deleted = SshKey.delete().where((SshKey.owner == p.user.id) & (SshKey.public_id == key_id)).execute()
    if not deleted:
        raise NotFound(f"SSH key {key_id!r} not found")
