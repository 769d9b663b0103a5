"""JSON <-> protobuf messages, with the API's conventions.

Unlike protobuf's canonical JSON mapping: field names stay snake_case, 64-bit
integers are JSON numbers (not strings), and an unset optional field is
``null`` (the original API's ``expires_at: null``, ``owner_id: null``).
Errors name the offending field.
"""
from __future__ import annotations

import base64
import json
import math

from google.api import field_behavior_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor as F

from appliance.errors import Invalid
from appliance.v1 import options_pb2

_STRUCT_TYPES = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
_INTS = {F.TYPE_INT32, F.TYPE_INT64, F.TYPE_UINT32, F.TYPE_UINT64, F.TYPE_SINT32,
         F.TYPE_SINT64, F.TYPE_FIXED32, F.TYPE_FIXED64, F.TYPE_SFIXED32, F.TYPE_SFIXED64}


def required_fields(descriptor) -> list[str]:
    return [f.name for f in descriptor.fields
            if field_behavior_pb2.REQUIRED in f.GetOptions().Extensions[field_behavior_pb2.field_behavior]]


def is_inline(descriptor) -> bool:
    """A ``json_inline`` message: written as the value of its one set field."""
    return descriptor.GetOptions().Extensions[options_pb2.json_inline]


def _inline(message):
    descriptor = message.DESCRIPTOR
    if descriptor.oneofs:
        name = message.WhichOneof(descriptor.oneofs[0].name)
        return None if name is None else _value(descriptor.fields_by_name[name], getattr(message, name))
    field = descriptor.fields[0]
    value = getattr(message, field.name)
    return [_value(field, v) for v in value] if field.is_repeated else _value(field, value)


def _value(field, value):
    if field.type == F.TYPE_MESSAGE:
        if field.message_type.full_name in _STRUCT_TYPES:
            return json_format.MessageToDict(value)
        if is_inline(field.message_type):
            return _inline(value)
        return to_json(value)
    if field.type == F.TYPE_ENUM:
        return field.enum_type.values_by_number[value].name
    if field.type == F.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def omitted_unset(field) -> bool:
    """A field marked (omit_unset): absent from the JSON while unset, not null."""
    return field.GetOptions().Extensions[options_pb2.omit_unset]


def to_json(message) -> dict:
    out: dict[str, object] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.is_repeated:
            if field.message_type and field.message_type.GetOptions().map_entry:
                vf = field.message_type.fields_by_name["value"]
                out[field.name] = {k: _value(vf, v) for k, v in value.items()}
            else:
                out[field.name] = [_value(field, v) for v in value]
        elif field.has_presence and not message.HasField(field.name):
            oneof = field.containing_oneof
            if (oneof is None or len(oneof.fields) == 1) and not omitted_unset(field):  # proto3 `optional`
                out[field.name] = None
        else:
            out[field.name] = _value(field, value)
    return out


# Default for Config.json_max_depth: arrays/objects nested deeper are refused.
MAX_DEPTH = 32


def _check_depth(data, max_depth: int) -> None:
    """Iterative (no recursion): the deepest array/object nesting must be <= *max_depth*."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > max_depth:
                raise Invalid(f"request body is nested more than {max_depth} levels deep")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def _no_constant(name: str):
    """NaN, Infinity and -Infinity are not JSON (Python's parser takes them)."""
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):  # 1e999: no JSON number should become infinity
        raise ValueError("number out of range")
    return number


def parse_body(body: bytes, max_depth: int = MAX_DEPTH) -> dict:
    if not body or not body.strip():
        return {}
    try:
        data = json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:  # deeper than the interpreter's stack: refuse, never 500
        raise Invalid(f"request body is nested more than {max_depth} levels deep") from None
    except (UnicodeDecodeError, ValueError):
        raise Invalid("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Invalid("request body must be a JSON object")
    _check_depth(data, max_depth)
    return data


def check_required(data: dict, descriptor) -> None:
    for name in required_fields(descriptor):
        if data.get(name) is None:
            raise Invalid(f"field '{name}' is required")


def _strict_types(data: dict, descriptor) -> None:
    """protobuf's parser accepts "5" for an int and 5.0 for an int; the API does not."""
    for name, value in data.items():
        field = descriptor.fields_by_name.get(name)
        if field is None or value is None:
            continue
        values = value if field.is_repeated and isinstance(value, list) else [value]
        if field.is_repeated and not isinstance(value, list):
            raise Invalid(f"field '{name}' must be a list")
        for v in values:
            if field.type in _INTS and (isinstance(v, bool) or not isinstance(v, int)):
                raise Invalid(f"field '{name}' must be an integer")
            if field.type == F.TYPE_STRING and not isinstance(v, str):
                raise Invalid(f"field '{name}' must be a string")
            if field.type == F.TYPE_BOOL and not isinstance(v, bool):
                raise Invalid(f"field '{name}' must be true or false")
            if field.type == F.TYPE_MESSAGE and field.message_type.full_name == "google.protobuf.Struct" \
                    and not isinstance(v, dict):
                raise Invalid(f"field '{name}' must be an object")
            if field.type == F.TYPE_MESSAGE and field.message_type.full_name not in _STRUCT_TYPES:
                if not isinstance(v, dict):
                    raise Invalid(f"field '{name}' must be an object")
                _strict_types(v, field.message_type)


def from_json(data: dict, message) -> None:
    """Merge *data* into *message*; unknown fields are ignored, nulls mean unset."""
    descriptor = message.DESCRIPTOR
    data = {k: v for k, v in data.items() if v is not None and k in descriptor.fields_by_name}
    _strict_types(data, descriptor)
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except json_format.ParseError as e:
        raise Invalid(f"invalid request: {e}") from None


_INT_RANGES = {
    **dict.fromkeys((F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32), (-(2 ** 31), 2 ** 31 - 1)),
    **dict.fromkeys((F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64), (-(2 ** 63), 2 ** 63 - 1)),
    **dict.fromkeys((F.TYPE_UINT32, F.TYPE_FIXED32), (0, 2 ** 32 - 1)),
    **dict.fromkeys((F.TYPE_UINT64, F.TYPE_FIXED64), (0, 2 ** 64 - 1)),
}


def from_query(value: str, field):
    """Convert one query-string (or path) value to a field's type; out of the
    field's range is 400 (protobuf would raise ValueError: a 500)."""
    if field.type in _INTS:
        low, high = _INT_RANGES[field.type]
        try:
            if len(value) > 40:
                raise ValueError
            number = int(value)
        except ValueError:
            raise Invalid(f"parameter '{field.name}' must be an integer") from None
        if not low <= number <= high:
            raise Invalid(f"parameter '{field.name}' is out of range")
        return number
    if field.type == F.TYPE_BYTES:
        return value.encode()
    if field.type == F.TYPE_BOOL:
        lowered = value.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no", ""):
            return False
        raise Invalid(f"parameter '{field.name}' must be true or false")
    return value
