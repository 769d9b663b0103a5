"""The gateway's JSON codec on a running appliance: hostile bodies are clear 400s."""
import requests


def test_deeply_nested_json_is_a_400_json_error(appliance, user):
    """Issue 11 item 9: a 5,000-level nested body was a RecursionError, HTTP 500."""
    for body in (b'{"name":"x","scopes":' + b"[" * 5000 + b"]" * 5000 + b"}",
                 b'{"username":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}"):
        for path, client in (("/api/tokens", user), ("/api/login", requests)):
            r = client.post(appliance.url + path if client is requests else path, data=body,
                            headers={"Content-Type": "application/json"})
            assert r.status_code == 400, r.text
            assert r.headers["Content-Type"].startswith("application/json")
            assert r.json() == {"error": "request body is nested more than 32 levels deep"}
    # nothing was created, and the gateway still answers
    assert user.get("/api/tokens").json() == []


def test_nan_and_infinity_are_400_not_500(appliance, user):
    """Seen while probing beyond the fuzzer (it only sends valid JSON): NaN, Infinity
    and 1e999 in a token's scopes were a 500."""
    for number in (b"NaN", b"Infinity", b"-Infinity", b"1e999"):
        r = user.post("/api/tokens", data=b'{"name":"t","scopes":{"a":' + number + b"}}",
                      headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json() == {"error": "request body is not valid JSON"}, r.text
    assert user.get("/api/tokens").json() == []


def test_the_served_document_is_the_generated_one(appliance):
    from openapi_spec_validator import validate

    from appliance.http.openapi import document
    from appliance.http.routes import build_routes
    served = requests.get(appliance.url + "/openapi.json").json()
    validate(served)
    assert served == document(build_routes())


def test_a_huge_id_is_not_echoed_back_whole(user):
    r = user.get("/compute/containers/" + "a" * 10_000)
    assert r.status_code == 404, r.text
    assert len(r.text) < 1000, len(r.text)


def test_a_non_ascii_token_on_a_websocket_is_401_not_500(appliance):
    for headers, query in (({}, "?token=%C3%A9"),
                           ({"Authorization": "Bearer \u00e9t\u00e9".encode().decode("latin-1")}, "")):
        r = requests.get(f"{appliance.url}/compute/ws{query}", headers={
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", **headers}, timeout=10)
        assert r.status_code == 401, (query, r.status_code, r.text)
