"""An OpenAPI 3 document generated from the same descriptors as the routes."""
from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor as F

from appliance import __version__
from appliance.http.codec import required_fields
from appliance.v1 import options_pb2 as opt

_SCALARS = {
    F.TYPE_STRING: {"type": "string"}, F.TYPE_BOOL: {"type": "boolean"},
    F.TYPE_DOUBLE: {"type": "number"}, F.TYPE_FLOAT: {"type": "number"},
    F.TYPE_BYTES: {"type": "string", "format": "byte"},
    F.TYPE_INT32: {"type": "integer", "format": "int32"}, F.TYPE_INT64: {"type": "integer", "format": "int64"},
}
_FREEFORM = {"google.protobuf.Struct": {"type": "object", "additionalProperties": True},
             "google.protobuf.Value": {}, "google.protobuf.ListValue": {"type": "array", "items": {}}}
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
_ACCESS = {
    opt.ACCESS_PUBLIC: "No authentication.",
    opt.ACCESS_OPTIONAL: "Authentication optional.",
    opt.ACCESS_SESSION: "Session JWT only.",
    opt.ACCESS_ADMIN: "Session JWT of an admin.",
    opt.ACCESS_TOKEN: "Session JWT or API token (scopes apply).",
}


def _schema_name(descriptor) -> str:
    return descriptor.full_name.replace("appliance.v1.", "")


class _Schemas:
    def __init__(self):
        self.components: dict[str, dict] = {}

    def ref(self, descriptor) -> dict:
        if descriptor.full_name in _FREEFORM:
            return dict(_FREEFORM[descriptor.full_name])
        name = _schema_name(descriptor)
        if name not in self.components:
            self.components[name] = {}  # placeholder breaks recursion
            self.components[name] = self.message(descriptor)
        return {"$ref": f"#/components/schemas/{name}"}

    def field(self, field) -> dict:
        if field.type == F.TYPE_MESSAGE:
            schema = self.ref(field.message_type)
        elif field.type == F.TYPE_ENUM:
            schema = {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        else:
            schema = dict(_SCALARS.get(field.type, {"type": "integer"}))
        if field.is_repeated:
            return {"type": "array", "items": schema}
        if field.has_presence and field.type != F.TYPE_MESSAGE:
            schema["nullable"] = True
        return schema

    def message(self, descriptor, exclude=()) -> dict:
        props = {f.name: self.field(f) for f in descriptor.fields if f.name not in exclude}
        schema = {"type": "object", "properties": props}
        required = [n for n in required_fields(descriptor) if n not in exclude]
        if required:
            schema["required"] = required
        return schema


def _operation(route, schemas: _Schemas) -> dict:
    method = route.method
    request_desc = method.descriptor.input_type
    op = {
        "operationId": f"{method.descriptor.name}_{route.verb.lower()}_{len(route.template)}",
        "summary": method.descriptor.name,
        "description": _ACCESS[method.access],
        "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                       for p in route.path_params],
        "responses": {
            "default": {"description": "error",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
        },
    }
    if method.access != opt.ACCESS_PUBLIC:
        op["security"] = [{"bearer": []}] + ([{}] if method.access == opt.ACCESS_OPTIONAL else [])
    if route.body == "*" and method.transport == opt.TRANSPORT_JSON:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": schemas.message(request_desc, exclude=route.path_params)}}}
    elif route.body == "" and method.transport == opt.TRANSPORT_JSON:
        for f in request_desc.fields:
            if f.name not in route.path_params and f.type != F.TYPE_MESSAGE:
                op["parameters"].append({"name": f.name, "in": "query", "required": False,
                                         "schema": schemas.field(f)})
    if method.transport == opt.TRANSPORT_JSON:
        response_desc = method.descriptor.output_type
        if route.response_body:
            schema = schemas.field(response_desc.fields_by_name[route.response_body])
        else:
            schema = schemas.ref(response_desc)
        op["responses"]["200"] = {"description": "OK", "content": {"application/json": {"schema": schema}}}
    else:
        name = opt.Transport.Name(method.transport).replace("TRANSPORT_", "").lower()
        op["responses"]["200"] = {"description": f"streamed ({name}); see docs/api.md"}
    return op


def document(routes) -> dict:
    schemas = _Schemas()
    paths: dict[str, dict] = {}
    for route in routes:
        paths.setdefault(route.template, {})[route.verb.lower()] = _operation(route, schemas)
    paths["/healthz"] = {"get": {"operationId": "healthz", "summary": "Health",
                                 "responses": {"200": {"description": "ok",
                                                       "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
    schemas.components["Error"] = _ERROR
    return {
        "openapi": "3.0.3",
        "info": {"title": "appliance", "version": __version__,
                 "description": "Generated from proto/appliance/v1 (google.api.http bindings)."},
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
