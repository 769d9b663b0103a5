"""The route table comes from the proto bindings and must match API.md exactly."""
import re

from appliance.http.routes import build_routes

# Every method + path of shared/spec/API.md (":x" written as "{x}").
API_MD = {
    "POST /api/login", "GET /api/session", "POST /api/logout", "POST /api/tokens", "GET /api/tokens",
    "DELETE /api/tokens/{id}", "GET /api/tokens/{id}/check",
    "GET /admin/users", "POST /admin/users", "DELETE /admin/users/{user_id}", "DELETE /admin/users",
    "GET /compute/containers", "POST /compute/containers", "GET /compute/containers/{id}",
    "DELETE /compute/containers/{id}", "POST /compute/containers/{id}/start",
    "POST /compute/containers/{id}/stop", "GET /compute/ssh-keys", "POST /compute/ssh-keys",
    "DELETE /compute/ssh-keys/{id}", "GET /compute/containers/{id}/ssh", "PUT /compute/containers/{id}/ssh",
    "GET /compute/containers/{id}/ingress", "POST /compute/containers/{id}/ingress",
    "DELETE /compute/containers/{id}/ingress/{port}", "GET /compute/containers/{id}/mounts",
    "PUT /compute/containers/{id}/mounts", "GET /compute/ws", "GET /compute/containers/{id}/terminal",
    "GET /storage/namespaces", "POST /storage/namespaces", "PUT /storage/namespaces/{name}",
    "DELETE /storage/namespaces/{name}", "GET /storage/files", "POST /storage/upload",
    "GET /storage/download", "DELETE /storage/delete", "GET /storage/{namespace}/{name}",
    "GET /storage/download/{namespace}/{name}", "GET /storage/status", "GET /sse/progress",
    # beyond API.md: raw uploads (issue 3)
    "PUT /storage/{namespace}/{name}",
}


def test_routes_are_exactly_the_contract():
    assert {f"{r.verb} {r.template}" for r in build_routes()} == API_MD


def _first_match(verb, path):
    for r in build_routes():
        if r.verb == verb and re.match(r.pattern, path):
            return r
    return None


def test_literal_segments_win_over_parameters():
    assert _first_match("PUT", "/storage/namespaces/photos").method.descriptor.name == "UpdateNamespace"
    assert _first_match("PUT", "/storage/photos/a.txt").method.descriptor.name == "PutFile"
    assert _first_match("GET", "/storage/photos/a.txt").method.descriptor.name == "GetFile"
    assert _first_match("GET", "/storage/download/photos/a.txt").method.descriptor.name == "Download"
    assert _first_match("GET", "/storage/download").method.descriptor.name == "Download"
    assert _first_match("GET", "/storage/files").method.descriptor.name == "ListFiles"


def test_path_parameters_are_named_groups():
    r = _first_match("DELETE", "/compute/containers/abc/ingress/8080")
    assert re.match(r.pattern, "/compute/containers/abc/ingress/8080").groupdict() == {"id": "abc", "port": "8080"}
    assert r.path_params == ("id", "port")


def test_additional_bindings_are_numbered_in_proto_order():
    by_rpc = {}
    for r in build_routes():
        by_rpc.setdefault(r.method.descriptor.name, {})[r.binding] = r.template
    assert by_rpc["DeleteUser"] == {0: "/admin/users/{user_id}", 1: "/admin/users"}
    assert by_rpc["Download"] == {0: "/storage/download", 1: "/storage/download/{namespace}/{name}"}
    assert all(set(b) == set(range(len(b))) for b in by_rpc.values())
