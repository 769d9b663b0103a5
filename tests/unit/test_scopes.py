"""The endpoint -> scope map of API.md, checked against the one scope function."""
import pytest

from appliance.core.auth import scopes
from appliance.errors import Invalid

UID = "XyZ123"
OTHER = "Abc999"

# (endpoint, service, resource, resource_id, action) exactly as API.md's table.
ENDPOINTS = [
    ("GET /compute/containers", "compute", "containers", None, "read"),
    ("POST /compute/containers", "compute", "containers", None, "create"),
    ("GET /compute/quota", "compute", "containers", None, "read"),
    ("GET /compute/containers/:id", "compute", "containers", "c1", "read"),
    ("GET /compute/containers/:id/ssh", "compute", "containers", "c1", "read"),
    ("GET /compute/containers/:id/ingress", "compute", "containers", "c1", "read"),
    ("GET /compute/containers/:id/mounts", "compute", "containers", "c1", "read"),
    ("DELETE /compute/containers/:id", "compute", "containers", "c1", "delete"),
    ("POST /compute/containers/:id/start", "compute", "containers", "c1", "update"),
    ("POST /compute/containers/:id/stop", "compute", "containers", "c1", "update"),
    ("PUT /compute/containers/:id/ssh", "compute", "containers", "c1", "update"),
    ("POST /compute/containers/:id/ingress", "compute", "containers", "c1", "update"),
    ("DELETE /compute/containers/:id/ingress/:port", "compute", "containers", "c1", "update"),
    ("PUT /compute/containers/:id/mounts", "compute", "containers", "c1", "update"),
    ("GET /compute/containers/:id/terminal", "compute", "containers", "c1", "update"),
    ("GET /compute/ssh-keys", "compute", "keys", None, "read"),
    ("POST /compute/ssh-keys", "compute", "keys", None, "create"),
    ("DELETE /compute/ssh-keys/:id", "compute", "keys", None, "delete"),
    ("GET /compute/ws", "compute", None, None, "read"),
    ("GET /storage/namespaces", "storage", "namespaces", None, "read"),
    ("POST /storage/namespaces", "storage", "namespaces", None, "create"),
    ("PUT /storage/namespaces/:name", "storage", "namespaces", "photos.2026", "update"),
    ("DELETE /storage/namespaces/:name", "storage", "namespaces", "photos.2026", "delete"),
    ("GET /storage/files", "storage", "files", "photos.2026", "read"),
    ("GET /storage/download", "storage", "files", "photos.2026", "read"),
    ("POST /storage/upload", "storage", "files", "photos.2026", "create"),
    ("DELETE /storage/delete", "storage", "files", "photos.2026", "delete"),
]
OTHER_ACTION = {"read": "update", "create": "read", "update": "read", "delete": "read"}


def target(service, resource, rid, uid=UID):
    return ".".join(s for s in (service, uid, resource, rid) if s)


@pytest.mark.parametrize("endpoint,service,resource,rid,action", ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
class TestEndpointScopes:
    def test_session_allows_everything(self, endpoint, service, resource, rid, action):
        assert scopes.allows(None, action, service, UID, resource, rid)

    def test_exact_scope_allows(self, endpoint, service, resource, rid, action):
        granted = {target(service, resource, rid): [action]}
        assert scopes.allows(granted, action, service, UID, resource, rid)

    def test_service_scope_cascades_down(self, endpoint, service, resource, rid, action):
        assert scopes.allows({f"{service}.{UID}": [action]}, action, service, UID, resource, rid)

    def test_other_action_denied(self, endpoint, service, resource, rid, action):
        granted = {target(service, resource, rid): [OTHER_ACTION[action]]}
        assert not scopes.allows(granted, action, service, UID, resource, rid)

    def test_other_user_denied(self, endpoint, service, resource, rid, action):
        granted = {f"{service}.{OTHER}": [action]}
        assert not scopes.allows(granted, action, service, UID, resource, rid)

    def test_other_service_denied(self, endpoint, service, resource, rid, action):
        other = "storage" if service == "compute" else "compute"
        assert not scopes.allows({f"{other}.{UID}": [action]}, action, service, UID, resource, rid)

    def test_narrower_scope_does_not_grant_upward(self, endpoint, service, resource, rid, action):
        if rid is None:
            narrower = {target(service, resource or "containers", "zzz"): [action]}
        else:
            narrower = {target(service, resource, rid + "-other"): [action]}
        assert not scopes.allows(narrower, action, service, UID, resource, rid)


def test_list_filter_for_narrow_token():
    granted = {f"compute.{UID}.containers.a": ["read"], f"compute.{UID}.containers.b": ["read", "update"],
               f"compute.{UID}.containers.c": ["update"]}
    assert scopes.granted_ids(granted, "read", "compute", UID, "containers") == {"a", "b"}
    assert scopes.granted_ids({f"compute.{UID}": ["read"]}, "read", "compute", UID, "containers") is None
    assert scopes.granted_ids(None, "read", "compute", UID, "containers") is None
    assert scopes.granted_ids({f"storage.{UID}": ["read"]}, "read", "compute", UID, "containers") == set()


def test_namespace_ids_may_contain_dots():
    granted = {f"storage.{UID}.files.my.photos": ["read"]}
    assert scopes.allows(granted, "read", "storage", UID, "files", "my.photos")
    assert not scopes.allows(granted, "read", "storage", UID, "files", "my")


@pytest.mark.parametrize("bad", [
    {},
    {"network.XyZ123": ["read"]},
    {"compute.Abc999": ["read"]},
    {"compute.XyZ123.disks": ["read"]},
    {"storage.XyZ123.containers": ["read"]},
    {"compute.XyZ123": ["admin"]},
    {"compute.XyZ123": []},
    {"compute.XyZ123": "read"},
    {"compute": ["read"]},
    {"compute..containers": ["read"]},
    ["compute.XyZ123"],
])
def test_validate_rejects(bad):
    with pytest.raises(Invalid):
        scopes.validate(bad, UID)


def test_validate_normalises():
    validated = scopes.validate({f"compute.{UID}": ["read", "read", "create"]}, UID)
    assert validated == {f"compute.{UID}": ["create", "read"]}


def test_require_names_the_target():
    class P:
        scopes = {f"compute.{UID}.keys": ["read"]}
        user_id = UID
    with pytest.raises(Exception) as e:
        scopes.require(P, "delete", "compute", "keys")
    assert f"compute.{UID}.keys" in str(e.value)
