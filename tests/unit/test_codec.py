import pytest

from appliance.errors import Invalid
from appliance.http import codec
from appliance.v1 import auth_pb2, compute_pb2, storage_pb2


def test_unset_optional_is_null_and_int64_is_a_number():
    out = codec.to_json(auth_pb2.ApiToken(id="t", name="n", created_at=1_800_000_000_000))
    assert out["expires_at"] is None and out["last_used_at"] is None
    assert out["created_at"] == 1_800_000_000_000
    assert codec.to_json(storage_pb2.Namespace(name="default"))["owner_id"] is None


def test_struct_round_trips_as_plain_json():
    msg = auth_pb2.CreateTokenRequest()
    codec.from_json({"name": "t", "scopes": {"compute.abc": ["read"]}}, msg)
    assert codec.to_json(msg)["scopes"] == {"compute.abc": ["read"]}


@pytest.mark.parametrize("body,field", [
    ({"name": 5}, "name"),
    ({"name": "x", "memory_mb": "512"}, "memory_mb"),
    ({"name": "x", "memory_mb": 1.5}, "memory_mb"),
    ({"name": "x", "ssh_enabled": "yes"}, "ssh_enabled"),
    ({"name": "x", "ssh_key_ids": "k1"}, "ssh_key_ids"),
    ({"name": "x", "ingress_rules": [{"port": "80"}]}, "port"),
])
def test_wrong_types_name_the_field(body, field):
    with pytest.raises(Invalid) as e:
        codec.from_json(body, compute_pb2.CreateContainerRequest())
    assert field in e.value.message


def test_required_fields_come_from_field_behavior():
    assert codec.required_fields(compute_pb2.CreateContainerRequest.DESCRIPTOR) == ["name", "ssh_key_ids"]
    with pytest.raises(Invalid, match="'password' is required"):
        codec.check_required({"username": "a"}, auth_pb2.LoginRequest.DESCRIPTOR)


def test_unknown_fields_and_nulls_are_ignored():
    msg = compute_pb2.CreateContainerRequest()
    codec.from_json({"name": "x", "whatever": {"a": 1}, "memory_mb": None}, msg)
    assert msg.name == "x" and not msg.HasField("memory_mb")


@pytest.mark.parametrize("body", [b"{", b"[1]", b'"x"', b"\xff\xfe"])
def test_body_must_be_a_json_object(body):
    with pytest.raises(Invalid):
        codec.parse_body(body)


@pytest.mark.parametrize("depth", [33, 200, 5000, 100_000])
def test_deep_nesting_is_a_clear_400_not_a_crash(depth):
    """Issue 11 item 9: 5,000-level nested JSON was a RecursionError (HTTP 500)."""
    for body in (b'{"a":' + b"[" * depth + b"]" * depth + b"}",
                 b'{"a":' + b'{"b":' * depth + b"1" + b"}" * depth + b"}"):
        with pytest.raises(Invalid, match="nested more than 32 levels"):
            codec.parse_body(body)


def test_nesting_up_to_the_limit_is_accepted():
    body = b'{"a":' + b"[" * 31 + b"]" * 31 + b"}"
    assert codec.parse_body(body)["a"]
    with pytest.raises(Invalid, match="nested more than 4 levels"):
        codec.parse_body(b'{"a":[[[[1]]]]}', max_depth=4)
    assert codec.parse_body(b'{"a":[[[1]]]}', max_depth=4)


@pytest.mark.parametrize("raw", ["99999999999", "-2147483649", "1" * 41, "x"])
def test_query_integers_out_of_range_are_400(raw):
    """Seen while preparing the fuzz run: DELETE .../ingress/99999999999 was a protobuf ValueError (HTTP 500)."""
    field = compute_pb2.DeleteIngressRequest.DESCRIPTOR.fields_by_name["port"]
    with pytest.raises(Invalid, match="'port'"):
        codec.from_query(raw, field)
    assert codec.from_query("2147483647", field) == 2 ** 31 - 1


def test_query_bytes_are_utf8():
    """Seen while preparing the fuzz run: ?data= on the terminal (a bytes field) was a TypeError (HTTP 500)."""
    msg = compute_pb2.TerminalInput()
    msg.data = codec.from_query("ls\r", msg.DESCRIPTOR.fields_by_name["data"])
    assert msg.data == b"ls\r"


def test_a_deeply_nested_terminal_frame_is_raw_input_not_a_crash():
    """The terminal's JSON text frames had the same RecursionError (the socket's handler died)."""
    from appliance.http.terminal_ws import parse_frame
    frame = '{"type":' + "[" * 5000 + "]" * 5000 + "}"
    assert parse_frame(frame).data == frame.encode()


@pytest.mark.parametrize("body", [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": [-Infinity]}', b'{"a": 1e999}',
                                  b'{"a": {"b": -1.5e400}}'])
def test_non_finite_numbers_are_not_json(body):
    """Python's json takes NaN/Infinity and turns 1e999 into inf; in a Struct (token scopes)
    that was an HTTP 500. They are 400 now."""
    with pytest.raises(Invalid, match="not valid JSON"):
        codec.parse_body(body)
    assert codec.parse_body(b'{"a": 1.5e300, "b": -0.0, "c": 12}') == {"a": 1.5e300, "b": -0.0, "c": 12}
