"""AdminContainer (GET /compute/admin/containers) is Container plus owner,
user_id and host, field for field: the owner's message is re-parsed as one."""
from appliance.v1 import compute_pb2


def _fields(message) -> list[tuple[str, int, int, bool]]:
    return [(f.name, f.number, f.type, f.has_presence) for f in message.DESCRIPTOR.fields]


def test_admin_container_repeats_containers_fields_with_their_numbers():
    admin, plain = _fields(compute_pb2.AdminContainer), _fields(compute_pb2.Container)
    assert admin[:len(plain)] == plain
    assert [name for name, *_ in admin[len(plain):]] == ["owner", "user_id", "host"]


def test_a_container_message_carries_over_with_optional_fields_unset():
    msg = compute_pb2.Container(id="abc", name="n", memory_mb=512, storage_used_gb=0.5, ssh_enabled=True)
    out = compute_pb2.AdminContainer.FromString(msg.SerializeToString())
    assert (out.id, out.name, out.memory_mb, out.storage_used_gb, out.ssh_enabled) == ("abc", "n", 512, 0.5, True)
    assert not out.HasField("error")
    msg.error = "boom"
    assert compute_pb2.AdminContainer.FromString(msg.SerializeToString()).error == "boom"
