"""Storage namespaces as a user meets them (docs/storage.md "Namespaces"): listing rules,
owner-only changes, the shared default namespace, scopes of API tokens. Deleting a
namespace or a user removes their blobs: on both blob stores (storage_backends.py);
the rest is rules the blob store plays no part in (local_only)."""
import pytest
import requests
from storage_backends import backend_admin, backend_appliance, blob_names, seaweed_set_fixture  # noqa: F401
from test_storage_helpers import unique_ns, upload


def names(listing):
    return [n["name"] for n in listing]


def token(client, scopes):
    r = client.post("/api/tokens", json={"name": "t", "scopes": scopes})
    assert r.status_code == 200, r.text
    return client.with_token(r.json()["token"])


@pytest.mark.local_only
def test_default_namespace_is_shared_and_public(appliance):
    r = requests.get(appliance.url + "/storage/namespaces")
    assert r.status_code == 200
    default = [n for n in r.json() if n["name"] == "default"]
    assert default and default[0]["visibility"] == 2 and default[0]["owner_id"] is None
    assert set(default[0]) == {"name", "count", "hidden", "visibility", "owner_id"}
    assert r.json()[0]["name"] == "default"


@pytest.mark.local_only
def test_create_returns_the_namespace_and_409_when_taken(user, make_user):
    name = unique_ns()
    r = user.post("/storage/namespaces", json={"name": name, "visibility": 1})
    assert r.status_code == 200, r.text
    assert r.json() == {"name": name, "count": 0, "hidden": False, "visibility": 1, "owner_id": user.user_id}
    assert user.post("/storage/namespaces", json={"name": name}).status_code == 409
    assert make_user().post("/storage/namespaces", json={"name": name}).status_code == 409
    assert user.post("/storage/namespaces", json={"name": "default"}).status_code == 409


@pytest.mark.local_only
def test_create_defaults_to_private(user):
    name = unique_ns()
    r = user.post("/storage/namespaces", json={"name": name})
    assert r.json()["visibility"] == 0 and r.json()["hidden"] is False


@pytest.mark.parametrize("body", [
    {"name": ""}, {"name": "."}, {"name": ".."}, {"name": "a/b"}, {"name": "a b"}, {"name": "x" * 65},
    {"name": "../etc"}, {"name": "ü"}, {"name": "a\\b"}, {"name": "ok", "visibility": 3},
    {"name": "ok", "visibility": -1}, {"name": "ok", "visibility": "2"}, {"visibility": 1}, {"name": 5},
])
@pytest.mark.local_only
def test_bad_namespace_requests_are_400(user, body):
    r = user.post("/storage/namespaces", json=body)
    assert r.status_code == 400, (body, r.text)
    assert "error" in r.json()
    listed = names(user.get("/storage/namespaces").json())
    assert body.get("name") not in listed or body.get("name") == "default"


@pytest.mark.local_only
def test_create_needs_auth(appliance):
    r = requests.post(appliance.url + "/storage/namespaces", json={"name": unique_ns()})
    assert r.status_code == 401


@pytest.mark.local_only
def test_listing_rules(appliance, make_user):
    owner, other = make_user(), make_user()
    private, visible, public, hidden = (unique_ns(k) for k in ("priv", "vis", "pub", "hid"))
    for name, vis, hid in ((private, 0, False), (visible, 1, False), (public, 2, False), (hidden, 2, True)):
        r = owner.post("/storage/namespaces", json={"name": name, "visibility": vis, "hidden": hid})
        assert r.status_code == 200
    mine = names(owner.get("/storage/namespaces").json())
    assert {private, visible, public, hidden} <= set(mine)
    theirs = names(other.get("/storage/namespaces").json())
    anonymous = names(requests.get(appliance.url + "/storage/namespaces").json())
    for listing in (theirs, anonymous):
        assert public in listing and "default" in listing
        assert private not in listing and visible not in listing and hidden not in listing


@pytest.mark.local_only
def test_count_follows_files(user):
    name = unique_ns()
    user.post("/storage/namespaces", json={"name": name})
    for i in range(3):
        assert upload(user, name, f"f{i}", b"x").status_code == 200
    ns = [n for n in user.get("/storage/namespaces").json() if n["name"] == name][0]
    assert ns["count"] == 3


@pytest.mark.local_only
def test_update_is_owner_only(user, make_user, admin):
    name = unique_ns()
    user.post("/storage/namespaces", json={"name": name, "visibility": 0})
    r = user.put(f"/storage/namespaces/{name}", json={"visibility": 2})
    assert r.status_code == 200 and r.json()["visibility"] == 2 and r.json()["hidden"] is False
    r = user.put(f"/storage/namespaces/{name}", json={"hidden": True})
    assert r.status_code == 200 and r.json()["visibility"] == 2 and r.json()["hidden"] is True
    assert user.put(f"/storage/namespaces/{name}", json={"visibility": 7}).status_code == 400
    assert make_user().put(f"/storage/namespaces/{name}", json={"visibility": 0}).status_code == 403
    assert admin.put(f"/storage/namespaces/{name}", json={"visibility": 0}).status_code == 403
    assert requests.put(user.base + f"/storage/namespaces/{name}", json={"visibility": 0}).status_code == 401
    assert user.put("/storage/namespaces/no-such-ns", json={"visibility": 0}).status_code == 404
    assert user.put("/storage/namespaces/default", json={"visibility": 0}).status_code == 403
    assert admin.put("/storage/namespaces/default", json={"visibility": 0}).status_code == 403


def test_delete_removes_the_namespace_and_its_files(appliance, user, make_user):
    name = unique_ns()
    user.post("/storage/namespaces", json={"name": name, "visibility": 2})
    assert upload(user, name, "a.txt", b"hello").status_code == 200
    assert make_user().delete(f"/storage/namespaces/{name}").status_code == 403
    before = blob_names(appliance)
    r = user.delete(f"/storage/namespaces/{name}")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert name not in names(user.get("/storage/namespaces").json())
    assert user.get(f"/storage/{name}/a.txt").status_code == 404
    assert user.get("/storage/files", params={"namespace": name}).status_code == 404
    assert len(before - blob_names(appliance)) == 1  # the blob is gone from the store
    assert user.delete(f"/storage/namespaces/{name}").status_code == 404
    # The name is free again.
    assert user.post("/storage/namespaces", json={"name": name}).json()["count"] == 0


@pytest.mark.local_only
def test_default_cannot_be_deleted(admin, user):
    assert user.delete("/storage/namespaces/default").status_code == 403
    assert admin.delete("/storage/namespaces/default").status_code == 403


@pytest.mark.local_only
def test_namespace_scopes_of_api_tokens(user):
    uid = user.user_id
    a, b = unique_ns(), unique_ns()
    user.post("/storage/namespaces", json={"name": a})
    user.post("/storage/namespaces", json={"name": b})
    # create only
    creator = token(user, {f"storage.{uid}.namespaces": ["create"]})
    assert creator.post("/storage/namespaces", json={"name": unique_ns()}).status_code == 200
    assert creator.put(f"/storage/namespaces/{a}", json={"hidden": True}).status_code == 403
    assert creator.delete(f"/storage/namespaces/{a}").status_code == 403
    # read on one namespace: the listing shows only that one of the user's private ones
    reader = token(user, {f"storage.{uid}.namespaces.{a}": ["read"]})
    listed = names(reader.get("/storage/namespaces").json())
    assert a in listed and b not in listed and "default" in listed
    assert reader.post("/storage/namespaces", json={"name": unique_ns()}).status_code == 403
    # update/delete on one namespace only
    admin_a = token(user, {f"storage.{uid}.namespaces.{a}": ["update", "delete"]})
    assert admin_a.put(f"/storage/namespaces/{a}", json={"visibility": 1}).status_code == 200
    assert admin_a.put(f"/storage/namespaces/{b}", json={"visibility": 1}).status_code == 403
    assert admin_a.delete(f"/storage/namespaces/{b}").status_code == 403
    assert admin_a.delete(f"/storage/namespaces/{a}").status_code == 200
    # a compute-only token sees just what anonymous sees
    compute = token(user, {f"compute.{uid}": ["read"]})
    assert b not in names(compute.get("/storage/namespaces").json())
    # cascading: storage.<uid> grants everything below
    everything = token(user, {f"storage.{uid}": ["read", "update"]})
    assert b in names(everything.get("/storage/namespaces").json())
    assert everything.put(f"/storage/namespaces/{b}", json={"hidden": True}).status_code == 200


def test_deleting_a_user_removes_their_namespaces_and_files(appliance, admin, make_user):
    doomed, other = make_user(), make_user()
    name = unique_ns()
    doomed.post("/storage/namespaces", json={"name": name, "visibility": 2})
    assert upload(doomed, name, "a.bin", b"a" * 1000).status_code == 200
    assert upload(doomed, "default", f"{name}.bin", b"b" * 1000).status_code == 200
    assert upload(other, "default", f"{name}.keep", b"c").status_code == 200
    before = blob_names(appliance)
    assert admin.delete(f"/admin/users/{doomed.user_id}").status_code == 200
    assert name not in names(requests.get(appliance.url + "/storage/namespaces").json())
    listed = [f["name"] for f in other.get("/storage/files").json()]
    assert f"{name}.bin" not in listed and f"{name}.keep" in listed
    assert len(before - blob_names(appliance)) == 2
    # The name is free for someone else now.
    assert other.post("/storage/namespaces", json={"name": name}).status_code == 200
