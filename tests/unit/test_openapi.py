"""/openapi.json describes every operation fully (docs/api.md, "The OpenAPI document")."""
from openapi_spec_validator import validate

from appliance.contract import METHODS
from appliance.http.openapi import document
from appliance.http.routes import build_routes

DOC = document(build_routes())
OPS = {(verb, path): op for path, methods in DOC["paths"].items() for verb, op in methods.items()}


def _op(op_id):
    return next(op for op in OPS.values() if op["operationId"] == op_id)


def test_the_document_is_valid_openapi_3():
    validate(DOC)


def test_operation_ids_are_the_rpc_names_and_unique():
    ids = [op["operationId"] for op in OPS.values()]
    assert len(ids) == len(set(ids))
    bound = {m.descriptor.name for m in METHODS.values() if m.descriptor.containing_service.name in
             ("AuthService", "ComputeService", "StorageService")}
    assert bound <= set(ids)
    assert {"CreateContainer", "Upload", "PutFile", "DeleteUserByQuery", "DownloadByPath", "GetFileHead"} <= set(ids)
    assert all(i.isidentifier() and i[0].isupper() for i in ids)


def test_one_tag_per_service():
    assert {t["name"] for t in DOC["tags"]} == {"auth", "compute", "storage", "cluster", "metrics", "log", "meta"}
    assert all(len(op["tags"]) == 1 for op in OPS.values())
    assert _op("CreateContainer")["tags"] == ["compute"] and _op("ListUsers")["tags"] == ["auth"]
    assert _op("Upload")["tags"] == ["storage"]


def test_every_operation_has_a_success_response_and_json_errors():
    for (verb, path), op in OPS.items():
        success = [c for c in op["responses"] if c[0] in "123"]
        assert success, (verb, path)
        if path not in ("/healthz", "/openapi.json"):
            for code in ("400", "401", "403", "404", "409", "413", "429", "500", "503"):
                assert code in op["responses"], (verb, path, code)
    assert DOC["components"]["responses"]["Error404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert DOC["components"]["schemas"]["Error"]["required"] == ["error"]


def test_path_and_query_parameters():
    params = {p["name"]: p for p in _op("DeleteIngress")["parameters"]}
    assert params["id"]["in"] == "path" and params["port"]["schema"]["type"] == "integer"
    assert {p["name"]: p["in"] for p in _op("ListFiles")["parameters"]} == {"namespace": "query"}
    assert {p["name"]: p["in"] for p in _op("DeleteUserByQuery")["parameters"]} == {"user_id": "query", "id": "query"}


def test_json_bodies_and_answers_come_from_the_messages():
    body = _op("CreateContainer")["requestBody"]["content"]["application/json"]["schema"]
    schema = DOC["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert schema["required"] == ["name", "ssh_key_ids"] and "memory_mb" in schema["properties"]
    ok = _op("CreateContainer")["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Container"}
    container = DOC["components"]["schemas"]["Container"]
    assert container["properties"]["error"]["nullable"] is True and "error" in container["required"]
    assert _op("ListTokens")["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "array"
    # path parameters are not repeated in the body
    set_ssh = DOC["components"]["schemas"]["SetSshRequest"]
    assert "id" not in set_ssh["properties"]


def test_uploads_are_multipart_or_raw():
    upload = _op("Upload")
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file"] and form["properties"]["file"]["format"] == "binary"
    assert {"namespace", "overwrite", "X-File-Size", "id"} <= {p["name"] for p in upload["parameters"]}
    assert upload["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/UploadResponse")
    put = _op("PutFile")
    assert put["requestBody"]["content"]["application/octet-stream"]["schema"]["format"] == "binary"
    assert [p["name"] for p in put["parameters"] if p["in"] == "path"] == ["namespace", "name"]


def test_downloads_describe_ranges_and_conditional_requests():
    for op_id in ("Download", "DownloadByPath", "GetFile"):
        op = _op(op_id)
        headers = {p["name"] for p in op["parameters"] if p["in"] == "header"}
        assert headers == {"Range", "If-Range", "If-None-Match", "If-Modified-Since"}
        assert not {"head", "local", "range"} & {p["name"] for p in op["parameters"]}
        assert {"200", "206", "304", "416"} <= set(op["responses"])
        assert "Content-Range" in op["responses"]["206"]["headers"]
        assert op["responses"]["200"]["headers"]["ETag"]["required"] is True
        head = _op(op_id + "Head")
        assert all("content" not in r for r in head["responses"].values())


def test_websockets_and_event_streams_are_described_as_such():
    for op_id in ("WatchContainers", "Terminal"):
        op = _op(op_id)
        assert "101" in op["responses"] and "WebSocket" in op["description"]
        assert "token" in {p["name"] for p in op["parameters"]}
    sse = _op("WatchProgress")["responses"]["200"]
    assert "text/event-stream" in sse["content"] and sse["x-event-schema"]["$ref"].endswith("/Progress")


def test_security_follows_the_access_option():
    assert _op("Login")["security"] == []
    assert _op("GetStatus")["security"] == [{"bearer": []}, {}]  # optional: quota_used_bytes with a token
    assert _op("ListNamespaces")["security"] == [{"bearer": []}, {}]
    assert "security" not in _op("CreateContainer") and DOC["security"] == [{"bearer": []}]
