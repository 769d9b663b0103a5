"""The route table comes from the proto bindings and must match the API
(docs/api.md) exactly; bindings the gateway cannot serve as declared stop it
at start-up."""
import importlib.util
import re
import sys
from pathlib import Path

import pytest
from google.api import annotations_pb2

from appliance.contract import Method
from appliance.http.routes import UnsupportedBinding, build_routes

# Every method + path of the API as specified (":x" written as "{x}").
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
    # observability (API.md "Cluster health, metrics, logs and admin lists")
    "GET /sse/health", "GET /api/metrics/nodes", "GET /api/metrics/nodes/{name}",
    # issue 15: admin lists (helper admin) and container logs
    "GET /compute/admin/containers", "GET /admin/namespaces", "GET /admin/sessions",
    "GET /compute/containers/{id}/logs",
    "GET /sse/logs",
    # beyond the original specification: raw uploads
    "PUT /storage/{namespace}/{name}",
    # issue 15: Prometheus (admins; docs/observability-prometheus.md)
    "GET /metrics",
    # issue 13: hosts of the cloud (admins; docs/cluster-hosts.md)
    "GET /admin/hosts", "POST /admin/hosts/{name}/drain", "POST /admin/hosts/{name}/undrain",
    # issue 16: what the dashboard needs (the container quota, making an admin)
    "GET /compute/quota", "PUT /admin/users/{user_id}",
    # issue 18: accounts people look after themselves (docs/accounts.md)
    "PUT /api/settings/profile", "PUT /api/settings/password", "GET /api/settings/sessions",
    "DELETE /api/settings/sessions/{id}", "DELETE /api/settings/sessions", "DELETE /admin/sessions/{id}",
    "PUT /admin/users/{user_id}/password", "GET /api/settings/audit", "GET /admin/audit",
    "POST /api/service-accounts", "GET /api/service-accounts", "GET /api/service-accounts/{id}",
    "PUT /api/service-accounts/{id}/scopes", "DELETE /api/service-accounts/{id}",
    "POST /api/service-accounts/{id}/tokens", "GET /api/service-accounts/{id}/tokens",
    "POST /api/login/totp", "GET /api/settings/totp", "POST /api/settings/totp/begin", "POST /api/settings/totp/enable",
    "POST /api/settings/totp/disable", "DELETE /admin/users/{user_id}/second-factors",
    "POST /api/settings/keys/add/begin", "POST /api/settings/keys/add/finish", "GET /api/settings/keys",
    "POST /api/settings/keys/delete", "POST /api/settings/keys/rename", "POST /api/webauthn/login/begin",
    "POST /api/webauthn/login/finish",
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


# A small service with one method per binding shape, compiled by protoc (grpc_tools).
BINDINGS_PROTO = """
syntax = "proto3";
package routestest.v1;
import "google/api/annotations.proto";

message Spec { string name = 1; }
message Thing { string id = 1; Spec spec = 2; repeated string tags = 3; int32 port = 4; }

service Things {
  rpc Plain(Thing) returns (Thing) {
    option (google.api.http) = {
      post: "/things/{id}/ports/{port}" body: "*"
      additional_bindings { get: "/things" }
    };
  }
  rpc BodyField(Thing) returns (Thing) { option (google.api.http) = { post: "/things" body: "spec" }; }
  rpc BodyNested(Thing) returns (Thing) { option (google.api.http) = { post: "/things" body: "spec.name" }; }
  rpc BodyInExtraBinding(Thing) returns (Thing) {
    option (google.api.http) = { get: "/things" additional_bindings { put: "/things/{id}" body: "spec" } };
  }
  rpc MultiSegment(Thing) returns (Thing) { option (google.api.http) = { get: "/things/{id=**}" }; }
  rpc SubPattern(Thing) returns (Thing) { option (google.api.http) = { get: "/{id=things/*}" }; }
  rpc Wildcard(Thing) returns (Thing) { option (google.api.http) = { get: "/things/*" }; }
  rpc CustomVerb(Thing) returns (Thing) { option (google.api.http) = { post: "/things/{id}:cancel" }; }
  rpc PartSegment(Thing) returns (Thing) { option (google.api.http) = { get: "/things/{id}.json" }; }
  rpc NestedField(Thing) returns (Thing) { option (google.api.http) = { get: "/things/{spec.name}" }; }
  rpc MessageField(Thing) returns (Thing) { option (google.api.http) = { get: "/things/{spec}" }; }
  rpc RepeatedField(Thing) returns (Thing) { option (google.api.http) = { get: "/things/{tags}" }; }
  rpc UnknownField(Thing) returns (Thing) { option (google.api.http) = { get: "/things/{nope}" }; }
  rpc Relative(Thing) returns (Thing) { option (google.api.http) = { get: "things" }; }
  rpc Custom(Thing) returns (Thing) { option (google.api.http) = { custom: { kind: "HEAD" path: "/things" } }; }
}
"""


@pytest.fixture(scope="module")
def things(tmp_path_factory):
    """name -> Method of the compiled Things service (loaded once per run: the
    descriptors go into the process-wide pool)."""
    import grpc_tools
    from grpc_tools import protoc

    module = sys.modules.get("routestest_bindings_pb2")
    if module is None:
        out = tmp_path_factory.mktemp("routestest")
        (out / "routestest_bindings.proto").write_text(BINDINGS_PROTO)
        googleapis = Path(annotations_pb2.__file__).resolve().parents[2]
        well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
        assert protoc.main(["protoc", f"-I{out}", f"-I{googleapis}", f"-I{well_known}", f"--python_out={out}",
                            "routestest_bindings.proto"]) == 0
        spec = importlib.util.spec_from_file_location("routestest_bindings_pb2", out / "routestest_bindings_pb2.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["routestest_bindings_pb2"] = module
    service = module.DESCRIPTOR.services_by_name["Things"]
    return {md.name: Method(md, access=0, transport=0, query_token=False) for md in service.methods}


def _routes(method: Method):
    return build_routes({method.path: method})


def test_plain_bindings_are_served(things):
    routes = _routes(things["Plain"])
    assert [(r.verb, r.template, r.body, r.path_params) for r in routes] == [
        ("GET", "/things", "", ()), ("POST", "/things/{id}/ports/{port}", "*", ("id", "port"))]


@pytest.mark.parametrize("name, body", [("BodyField", "spec"), ("BodyNested", "spec.name"),
                                        ("BodyInExtraBinding", "spec")])
def test_a_body_naming_a_field_is_refused(things, name, body):
    with pytest.raises(UnsupportedBinding) as refused:
        _routes(things[name])
    message = str(refused.value)
    assert message.startswith(f"/routestest.v1.Things/{name}: ")
    assert f"body {body!r} is not supported" in message


@pytest.mark.parametrize("name, template", [
    ("MultiSegment", "/things/{id=**}"), ("SubPattern", "/{id=things/*}"), ("Wildcard", "/things/*"),
    ("CustomVerb", "/things/{id}:cancel"), ("PartSegment", "/things/{id}.json"),
    ("NestedField", "/things/{spec.name}"), ("MessageField", "/things/{spec}"),
    ("RepeatedField", "/things/{tags}"), ("UnknownField", "/things/{nope}"), ("Relative", "things"),
])
def test_a_path_template_beyond_plain_parameters_is_refused(things, name, template):
    with pytest.raises(UnsupportedBinding) as refused:
        _routes(things[name])
    message = str(refused.value)
    assert message.startswith(f"/routestest.v1.Things/{name}: google.api.http path {template!r}: ")


def test_a_custom_verb_is_refused(things):
    with pytest.raises(UnsupportedBinding, match=r"^/routestest.v1.Things/Custom: .*pattern 'custom'"):
        _routes(things["Custom"])


def test_the_real_contract_loads():
    assert len(build_routes()) == len(API_MD)


def test_every_transport_and_websocket_rpc_has_its_handler():
    """make_app's table names a handler for every transport the contract uses,
    and the WebSocket handler a session for every WebSocket RPC: no route of
    the real contract falls through to 501."""
    from appliance.http.app import TRANSPORTS
    from appliance.http.sockets import SESSIONS
    from appliance.v1 import options_pb2 as opt

    assert set(TRANSPORTS) == set(opt.Transport.values())
    websocket_rpcs = {r.method.descriptor.name for r in build_routes() if r.method.transport == opt.TRANSPORT_WEBSOCKET}
    assert websocket_rpcs == set(SESSIONS) == {"WatchContainers", "Terminal"}
