"""An OpenAPI 3 document generated from the same descriptors as the routes.

Every operation is described from its RPC: ``operationId`` is the RPC name
(additional bindings get ``ByPath``/``ByQuery``, downloads' HEAD ``...Head``),
one tag per service, path/query/header parameters from the request message
(``http_header`` / ``gateway_only`` field options), JSON bodies and answers
from the messages, and the transports (multipart and raw uploads, downloads,
WebSockets, Server-Sent Events) as HTTP shows them. docs/api.md explains it.
"""
from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor as F

from appliance import __version__
from appliance.http.codec import is_inline, omitted_unset, required_fields
from appliance.http.gateway import RAW_BODY
from appliance.v1 import options_pb2 as opt

_INT32 = {"type": "integer", "format": "int32", "minimum": -(2 ** 31), "maximum": 2 ** 31 - 1}
_INT64 = {"type": "integer", "format": "int64", "minimum": -(2 ** 63), "maximum": 2 ** 63 - 1}
_SCALARS: dict[int, dict[str, object]] = {
    F.TYPE_STRING: {"type": "string"}, F.TYPE_BOOL: {"type": "boolean"},
    F.TYPE_DOUBLE: {"type": "number", "format": "double"}, F.TYPE_FLOAT: {"type": "number", "format": "float"},
    F.TYPE_BYTES: {"type": "string", "format": "byte"},
    F.TYPE_INT32: _INT32, F.TYPE_SINT32: _INT32, F.TYPE_SFIXED32: _INT32,
    F.TYPE_INT64: _INT64, F.TYPE_SINT64: _INT64, F.TYPE_SFIXED64: _INT64,
    F.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2 ** 32 - 1},
    F.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2 ** 32 - 1},
    F.TYPE_UINT64: {"type": "integer", "minimum": 0, "maximum": 2 ** 64 - 1},
    F.TYPE_FIXED64: {"type": "integer", "minimum": 0, "maximum": 2 ** 64 - 1},
}
_FREEFORM: dict[str, dict[str, object]] = {
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {}, "google.protobuf.ListValue": {"type": "array", "items": {}}}
_ERROR = {"type": "object", "required": ["error"], "additionalProperties": False,
          "properties": {"error": {"type": "string", "description": "What went wrong."}}}
_ACCESS = {
    opt.ACCESS_PUBLIC: "No authentication.",
    opt.ACCESS_OPTIONAL: "Authentication optional (anonymous without a token; an invalid token is 401).",
    opt.ACCESS_SESSION: "Session JWT only (API tokens get 403).",
    opt.ACCESS_ADMIN: "Session JWT of an admin.",
    opt.ACCESS_TOKEN: "Session JWT or API token (scopes apply).",
}
# Every status the gateway's one table (appliance/http/status.py) can answer, as {"error": ...}.
_ERRORS = {
    "400": "Invalid request (body, parameter or header).",
    "401": "Missing, invalid or expired credentials (or wrong username/password).",
    "403": "Authenticated but not allowed.",
    "404": "Not found.",
    "409": "Conflict (exists already, limit reached, wrong state).",
    "413": "Body, file or quota over a configured limit.",
    "429": "Too many requests (see Retry-After).",
    "500": "Internal error (details only in the server's log).",
    "503": "Backend unavailable, or a transient condition: try again.",
}
_STRING = {"type": "string"}


def operation_id(route) -> str:
    """RPC name; additional bindings say how they differ; HEAD of a download adds ``Head``."""
    name = route.method.descriptor.name
    if route.binding:
        name += "ByPath" if route.path_params else "ByQuery"
    return name


def tag(route) -> str:
    return route.method.descriptor.containing_service.name.removesuffix("Service").lower()


def _schema_name(descriptor) -> str:
    return descriptor.full_name.replace("appliance.v1.", "")


class _Schemas:
    """components/schemas, built on demand. Response messages list every field
    as required (the codec always writes each one, ``null`` when unset)."""

    def __init__(self):
        self.components: dict[str, dict] = {}
        self.output: dict[str, bool] = {}

    def ref(self, descriptor, output: bool, exclude=()) -> dict:
        if descriptor.full_name in _FREEFORM:
            return dict(_FREEFORM[descriptor.full_name])
        name = _schema_name(descriptor)
        if self.output.setdefault(name, output) != output:  # a message both sent and received
            name += "Output" if output else "Input"
        if name not in self.components:
            self.components[name] = {}  # placeholder breaks recursion
            self.components[name] = (self.inline(descriptor, output) if is_inline(descriptor)
                                      else self.message(descriptor, output, exclude))
        return {"$ref": f"#/components/schemas/{name}"}

    def inline(self, descriptor, output: bool) -> dict:
        """A ``json_inline`` message is its set field's value (codec.py)."""
        if descriptor.oneofs:
            return {"oneOf": [self.field(f, output) for f in descriptor.oneofs[0].fields]}
        return self.field(descriptor.fields[0], output)

    def field(self, field, output: bool) -> dict:
        if field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            return {"type": "object", "additionalProperties": self.field(
                field.message_type.fields_by_name["value"], output)}
        if field.type == F.TYPE_MESSAGE:
            schema = self.ref(field.message_type, output)
        elif field.type == F.TYPE_ENUM:
            schema = {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        else:
            schema = dict(_SCALARS.get(field.type, {"type": "integer"}))
        if field.is_repeated:
            return {"type": "array", "items": schema}
        if field.has_presence and field.type != F.TYPE_MESSAGE and not omitted_unset(field):
            schema["nullable"] = True
        return schema

    def message(self, descriptor, output: bool, exclude=()) -> dict:
        fields = [f for f in descriptor.fields if f.name not in exclude and not _gateway_only(f)
                  and (output or not _header_of(f))]
        schema = {"type": "object", "properties": {f.name: self.field(f, output) for f in fields}}
        if output:
            required = [f.name for f in fields if not omitted_unset(f)
                        and (f.containing_oneof is None or f.containing_oneof.name.startswith("_"))]
        else:
            required = [n for n in required_fields(descriptor) if n not in exclude]
        if required:
            schema["required"] = required
        return schema


def _header_of(field) -> str:
    return field.GetOptions().Extensions[opt.http_header]


def _gateway_only(field) -> bool:
    return field.GetOptions().Extensions[opt.gateway_only]


def _param(name: str, where: str, schema: dict, required: bool = False, description: str = "") -> dict:
    param = {"name": name, "in": where, "required": required or where == "path", "schema": schema}
    if description:
        param["description"] = description
    return param


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _header(description: str, required: bool = True, schema: dict | None = None) -> dict:
    return {"description": description, "required": required, "schema": schema or _STRING}


def _error_responses(*extra: str) -> dict:
    codes = sorted(set(_ERRORS) | set(extra))
    return {code: {"$ref": f"#/components/responses/Error{code}"} for code in codes}


def _message_parameters(route, schemas: _Schemas) -> list[dict]:
    """Path parameters, then the other scalar request fields as query
    parameters (or as headers, per ``http_header``)."""
    desc = route.method.descriptor.input_type
    params = [_param(p, "path", schemas.field(desc.fields_by_name[p], False)) for p in route.path_params]
    if route.body == "*":
        return params
    required = required_fields(desc)
    for f in desc.fields:
        if f.name in route.path_params or f.type == F.TYPE_MESSAGE or _gateway_only(f):
            continue
        header = _header_of(f)
        schema = {"type": "string"} if f.type == F.TYPE_BYTES else schemas.field(f, False)
        schema.pop("nullable", None)
        params.append(_param(header or f.name, "header" if header else "query", schema,
                             required=f.name in required))
    return params


_TOKEN_PARAM = _param("token", "query", _STRING,
                      description="The token, for clients that cannot set headers (the header wins). Never logged.")
_TRANSFER_ID = _param("id", "query", {"type": "string", "maxLength": 128},
                      description="Transfer id: progress is reported on GET /sse/progress?id=...")
_FILE_SIZE = _param("X-File-Size", "header", {"type": "string", "pattern": "^[0-9]{0,18}$"},
                    description="Declared size in bytes (refused early if over the limits); empty: unknown.")
_OVERWRITE = _param("overwrite", "query", {"type": "boolean", "default": False},
                    description="Replace an existing file (else 409).")
_DOWNLOAD_HEADERS = {
    "ETag": _header("Entity tag of the stored content."),
    "Last-Modified": _header("HTTP date of the last change."),
    "Accept-Ranges": _header("Always `bytes`.", schema={"type": "string", "enum": ["bytes"]}),
    "Cache-Control": _header("`public, no-cache` or `private, no-cache`."),
}


def _upload(route, op: dict, schemas: _Schemas) -> None:
    if route.method.transport == opt.TRANSPORT_UPLOAD_MULTIPART:
        op["parameters"] += [
            _param("namespace", "query", {"type": "string", "default": "default"},
                   description="Target namespace (also accepted as a form field before the file)."),
            _OVERWRITE,
            _param("name", "query", _STRING, description="File name (default: the part's filename)."),
            _TRANSFER_ID, _FILE_SIZE,
        ]
        op["requestBody"] = {"required": True, "content": {"multipart/form-data": {
            "schema": {"type": "object", "required": ["file"], "properties": {
                "namespace": _STRING, "overwrite": {"type": "string", "enum": ["true", "false"]},
                "name": _STRING, "file": {"type": "string", "format": "binary"}},
                "description": "`namespace`, `overwrite` and `name` are read only when they come before"
                               " `file` and the query does not set them."},
            "encoding": {"file": {"contentType": "application/octet-stream"}}}}}
    else:
        op["parameters"] += [_OVERWRITE, _TRANSFER_ID, _FILE_SIZE]
        op["requestBody"] = {"required": True, "description": "The file's bytes.", "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    op["responses"]["200"] = {"description": "Stored: complete, fsynced and committed.",
                              "content": _json(schemas.ref(route.method.descriptor.output_type, True))}


def _download(route, op: dict) -> None:
    inline = route.method.descriptor.name != "Download"
    body_headers = {
        **_DOWNLOAD_HEADERS,
        "Content-Length": _header("Bytes in this body.", schema={"type": "integer", "minimum": 0}),
        "Content-Disposition": _header("`inline` or `attachment`, with `filename` and `filename*`."),
    }
    if inline:
        body_headers["Content-Security-Policy"] = _header(
            "`sandbox`: user content runs no scripts (`sandbox; frame-ancestors 'self'` when the session"
            " cookie was the credential of a private file).")
    body_headers["Cross-Origin-Resource-Policy"] = _header(
        "`same-origin` when the session cookie was the credential of a private file.", required=False)
    content = {("*/*" if inline else "application/octet-stream"): {"schema": {"type": "string", "format": "binary"}}}
    op["parameters"].append(_TOKEN_PARAM)
    op["responses"]["200"] = {"description": "The whole file.", "headers": body_headers, "content": content}
    op["responses"]["206"] = {"description": "The requested byte range.", "content": content, "headers": {
        **body_headers, "Content-Range": _header("`bytes <first>-<last>/<size>`.")}}
    op["responses"]["304"] = {"description": "Not modified (If-None-Match / If-Modified-Since).",
                              "headers": dict(_DOWNLOAD_HEADERS)}
    op["responses"]["416"] = {"description": "Range not satisfiable.", "content": _json(_error_ref()), "headers": {
        "Content-Range": _header("`bytes */<size>`.", required=False)}}
    op["description"] += (" A page of this origin loading the file as a script, style, worker or worklet"
                           " (`Sec-Fetch-Site: same-origin` with such a `Sec-Fetch-Dest`) gets 403.")


def _error_ref() -> dict:
    return {"$ref": "#/components/schemas/Error"}


def _websocket(route, op: dict) -> None:
    op["parameters"].append(_TOKEN_PARAM)
    op["description"] += (
        " WebSocket (RFC 6455): a GET with `Upgrade: websocket`. Authentication and scope errors come back"
        " as the usual JSON error status and the connection is not upgraded; a GET without the upgrade"
        " is 400. Messages are described in docs/api.md.")
    op["responses"]["101"] = {"description": "Switching Protocols: the WebSocket is open.", "headers": {
        "Upgrade": _header("`websocket`."), "Sec-WebSocket-Accept": _header("RFC 6455 accept key.")}}


def _sse(route, op: dict, schemas: _Schemas) -> None:
    event = schemas.ref(route.method.descriptor.output_type, True)
    op["parameters"].append(_TOKEN_PARAM)
    op["description"] += (" Server-Sent Events: each event is `data: <json>` (one "
                          f"{event['$ref'].rsplit('/', 1)[-1]} object); comment lines keep the stream alive.")
    # The media type's schema describes one event (as schemathesis reads SSE):
    # its `data` is the JSON of the object in x-event-schema.
    one_event = {"type": "object", "required": ["data"], "properties": {
        "data": {"type": "string", "description": "The event's object as JSON."}, "event": {"type": "string"}}}
    op["responses"]["200"] = {"description": "An event stream.", "content": {
        "text/event-stream": {"schema": one_event}}, "x-event-schema": event}


def _operation(route, schemas: _Schemas) -> dict:
    method = route.method
    op = {
        "operationId": operation_id(route),
        "summary": method.descriptor.name,
        "description": _ACCESS[method.access],
        "tags": [tag(route)],
        "parameters": _message_parameters(route, schemas) if method.transport != opt.TRANSPORT_UPLOAD_MULTIPART
        and method.transport != opt.TRANSPORT_UPLOAD_RAW
        else [_param(p, "path", _STRING) for p in route.path_params],
        "responses": _error_responses(),
    }
    if method.access == opt.ACCESS_OPTIONAL:
        op["security"] = [{"bearer": []}, {}]
    elif method.access == opt.ACCESS_PUBLIC:
        op["security"] = []
    transport = method.transport
    if transport == opt.TRANSPORT_JSON:
        if route.body == "*":
            op["requestBody"] = {"required": True, "content": _json(
                schemas.ref(method.descriptor.input_type, False, exclude=route.path_params))}
        response = method.descriptor.output_type
        if response.full_name == RAW_BODY:  # the only one: GET /metrics, the Prometheus text format
            op["responses"]["200"] = {"description": "OK (Prometheus text format, version 0.0.4)", "content": {
                "text/plain": {"schema": {"type": "string"}}}}
        else:
            schema = (schemas.field(response.fields_by_name[route.response_body], True) if route.response_body
                      else schemas.ref(response, True))
            op["responses"]["200"] = {"description": "OK", "content": _json(schema)}
    elif transport in (opt.TRANSPORT_UPLOAD_MULTIPART, opt.TRANSPORT_UPLOAD_RAW):
        _upload(route, op, schemas)
    elif transport == opt.TRANSPORT_DOWNLOAD:
        _download(route, op)
    elif transport == opt.TRANSPORT_WEBSOCKET:
        _websocket(route, op)
    elif transport == opt.TRANSPORT_SSE:
        _sse(route, op, schemas)
    op["responses"] = dict(sorted(op["responses"].items()))
    return op


def _head(op: dict) -> dict:
    """HEAD of a download: the GET's status codes and headers, no bodies."""
    head = {**op, "operationId": op["operationId"] + "Head", "summary": op["summary"] + " (HEAD)"}
    head["responses"] = {code: ({k: v for k, v in r.items() if k != "content"} if "$ref" not in r
                                else {"description": _ERRORS.get(code, "Error"), "headers": {}})
                         for code, r in op["responses"].items()}
    return head


_FIXED_PATHS: dict[str, dict] = {
    "/healthz": {"get": {
        "operationId": "Healthz", "summary": "Health", "tags": ["meta"], "security": [],
        "description": "200 `ok` when the core answers its gRPC health check. With `?service=storage`: "
                       "200 `ok` when file storage can take uploads (on SeaweedFS: a master, a volume server "
                       "and the filer answer), else 503; details in /storage/status.",
        "parameters": [{"name": "service", "in": "query", "required": False,
                        "description": "empty: the core as a whole",
                        "schema": {"type": "string", "enum": ["", "storage"]}}],
        "responses": {"200": {"description": "ok", "content": {"text/plain": {"schema": {"type": "string"}}}},
                      "400": {"$ref": "#/components/responses/Error400"},
                      "503": {"$ref": "#/components/responses/Error503"}}}},
    "/openapi.json": {"get": {
        "operationId": "GetOpenApi", "summary": "This document", "tags": ["meta"], "security": [],
        "responses": {"200": {"description": "OpenAPI 3.0 document",
                              "content": _json({"type": "object", "additionalProperties": True})}}}},
}


def document(routes) -> dict:
    schemas = _Schemas()
    paths: dict[str, dict] = {}
    for route in routes:
        op = _operation(route, schemas)
        paths.setdefault(route.template, {})[route.verb.lower()] = op
        if route.verb == "GET" and route.method.transport == opt.TRANSPORT_DOWNLOAD:
            paths[route.template]["head"] = _head(op)
    paths.update(_FIXED_PATHS)
    schemas.components["Error"] = _ERROR
    services = sorted({tag(r) for r in routes})
    return {
        "openapi": "3.0.3",
        "info": {"title": "appliance", "version": __version__,
                 "description": "Generated from proto/appliance/v1 (google.api.http bindings and the"
                                " appliance.v1 options). Errors are always {\"error\": \"...\"}; see docs/api.md."},
        "tags": [{"name": t, "description": f"{t.capitalize()}Service"} for t in services]
        + [{"name": "meta", "description": "Health and this document."}],
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "responses": {f"Error{code}": {"description": text, "content": _json(_error_ref())}
                          for code, text in _ERRORS.items()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Session JWT (POST /api/login) or API token (ecloud_...)."}},
        },
    }
