"""The client's field names against the proto contract: a field renamed in
proto/appliance/v1/*.proto breaks this test, not a user's table or script."""
from appliance.client import admin, containers, keys
from appliance.v1 import auth_pb2, compute_pb2


def _fields(message) -> set[str]:
    return set(message.DESCRIPTOR.fields_by_name)


def test_container_columns_are_container_fields():
    assert {k for k, _ in containers.COLUMNS} | set(containers.SHOWN) <= _fields(compute_pb2.Container)
    assert {k for k, _ in containers.INGRESS_COLUMNS} <= _fields(compute_pb2.IngressRule)


def test_create_body_is_a_create_container_request():
    body = containers.create_body("web", "nano", ["k1"], ("/data",), ("8080:80", "443"), True, 512, 2)
    assert set(body) == _fields(compute_pb2.CreateContainerRequest) - {"enable_ssh"}   # the alias we never send
    assert {k for rule in body["ingress_rules"] for k in rule} <= _fields(compute_pb2.IngressRuleSpec)
    assert body["ingress_rules"] == [{"port": 8080, "target_port": 80}, {"port": 443}]
    assert containers.create_body("web", "nano", [], (), (), None, None, None) == \
        {"name": "web", "instance_type": "nano", "ssh_key_ids": []}


def test_key_and_user_columns():
    assert {k for k, _ in keys.COLUMNS} <= _fields(compute_pb2.SshKey)
    assert {k for k, _ in admin.COLUMNS} <= _fields(auth_pb2.User)
