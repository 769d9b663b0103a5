"""Storage tables: namespaces and the files in them (content lives in files.BlobStore)."""
from __future__ import annotations

import peewee as pw

from appliance.core import db
from appliance.core.db import BaseModel, User, now

DEFAULT_NAMESPACE = "default"


class Namespace(BaseModel):
    id = pw.AutoField()  # what peewee adds when a model has no primary key; named for the type checker
    name = pw.CharField(max_length=64, unique=True)
    # NULL only for the shared "default" namespace. ON DELETE CASCADE in SQL so
    # a user removed outside the core (CLI) takes their rows along; their blobs
    # become orphans that the core's start-up sweep removes.
    owner = pw.ForeignKeyField(User, null=True, backref="namespaces", on_delete="CASCADE")
    owner_id: int | None  # peewee's accessor for the key column, declared for the type checker
    visibility = pw.IntegerField(default=0)  # 0 private, 1 visible, 2 public
    hidden = pw.BooleanField(default=False)
    created_at = pw.BigIntegerField(default=now)


class StoredFile(BaseModel):
    namespace = pw.ForeignKeyField(Namespace, backref="files", on_delete="CASCADE")
    name = pw.CharField(max_length=1024)  # <= 255 bytes of UTF-8, validated in storage.py
    blob_id = pw.CharField(max_length=64, unique=True)
    size = pw.BigIntegerField()
    # Who uploaded it (matters in "default": only they or an admin may replace it).
    uploader = pw.ForeignKeyField(User, null=True, backref="uploads", on_delete="CASCADE")
    uploader_id: int | None  # peewee's accessor for the key column, declared for the type checker
    created_at = pw.BigIntegerField(default=now)
    modified_at = pw.BigIntegerField(default=now)

    class Meta:
        table_name = "stored_file"
        indexes = ((("namespace", "name"), True),)


db.register(Namespace, StoredFile)


def ensure_default_namespace() -> Namespace:
    ns = Namespace.get_or_none(Namespace.name == DEFAULT_NAMESPACE)
    if ns is None:
        try:
            with db.database.atomic():
                ns = Namespace.create(name=DEFAULT_NAMESPACE, owner=None, visibility=2, hidden=False)
        except pw.IntegrityError:
            ns = Namespace.get(Namespace.name == DEFAULT_NAMESPACE)
    return ns
