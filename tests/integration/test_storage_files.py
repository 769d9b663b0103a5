"""Storage files over real HTTP (docs/storage.md "Files"): every row of the table,
auth by visibility, scopes, Range/conditional requests, bad names, races."""
import email.utils
import json
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from storage_backends import backend_admin, backend_appliance, blob_names, seaweed_set_fixture  # noqa: F401
from test_storage_helpers import curl_upload, sha256, unique_ns, upload


@pytest.fixture
def ns(user):
    name = unique_ns()
    assert user.post("/storage/namespaces", json={"name": name, "visibility": 0}).status_code == 200
    return name


blob_files = blob_names


def token(client, scopes):
    r = client.post("/api/tokens", json={"name": "t", "scopes": scopes})
    assert r.status_code == 200, r.text
    return r.json()["token"]


# -- upload, list, download ------------------------------------------------------

def test_curl_multipart_upload_list_and_download(user, ns, tmp_path):
    src = tmp_path / "report.txt"
    src.write_bytes(b"hello storage\n")
    status, body = curl_upload(user, src, namespace=ns)
    assert status == 200 and body["status"] == "ok" and body["name"] == "report.txt"
    files = user.get("/storage/files", params={"namespace": ns}).json()
    assert len(files) == 1
    f = files[0]
    assert {"name", "path", "namespace", "size", "created_at", "modified_at", "modified"} <= set(f)
    assert (f["name"], f["namespace"], f["size"]) == ("report.txt", ns, 14)
    assert f["modified"] == f["modified_at"] and abs(f["created_at"] - time.time()) < 60
    assert isinstance(f["created_at"], int)
    r = user.get("/storage/download", params={"name": "report.txt", "namespace": ns})
    assert r.status_code == 200 and r.content == b"hello storage\n"
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Disposition"].startswith("attachment;")
    assert 'filename="report.txt"' in r.headers["Content-Disposition"]
    assert r.headers["Content-Length"] == "14"
    assert r.headers["ETag"].startswith('"') and r.headers["Accept-Ranges"] == "bytes"
    assert email.utils.parsedate_to_datetime(r.headers["Last-Modified"]).timestamp() == f["modified_at"]


def test_inline_and_attachment_urls(user, ns):
    assert upload(user, ns, "page.html", b"<h1>x</h1>").status_code == 200
    assert upload(user, ns, "pic.png", b"\x89PNG....").status_code == 200
    r = user.get(f"/storage/{ns}/page.html")
    assert r.status_code == 200 and r.content == b"<h1>x</h1>"
    assert r.headers["Content-Type"].startswith("text/html")
    assert r.headers["Content-Disposition"].startswith("inline;")
    assert r.headers["Content-Security-Policy"] == "sandbox"
    assert user.get(f"/storage/{ns}/pic.png").headers["Content-Type"] == "image/png"
    r = user.get(f"/storage/download/{ns}/pic.png")
    assert r.status_code == 200 and r.content == b"\x89PNG...."
    assert r.headers["Content-Disposition"].startswith("attachment;")


def test_files_default_to_the_default_namespace(user):
    name = f"{unique_ns('f')}.txt"
    assert upload(user, "default", name, b"shared").status_code == 200
    r = user.post("/storage/upload", files={"file": (name + "2", b"q")})  # no namespace parameter
    assert r.status_code == 200, r.text
    listed = {f["name"]: f for f in requests.get(user.base + "/storage/files").json()}
    assert name in listed and name + "2" in listed and listed[name]["namespace"] == "default"
    assert requests.get(user.base + "/storage/download", params={"name": name}).content == b"shared"


def test_unicode_names(user, ns, tmp_path):
    name = "naïve résumé 📄.txt"
    assert upload(user, ns, name, b"u").status_code == 200
    src = tmp_path / "x"
    src.write_bytes(b"curl")
    status, body = curl_upload(user, src, namespace=ns, filename="ünï.bin")
    assert status == 200 and body["name"] == "ünï.bin"
    names = [f["name"] for f in user.get("/storage/files", params={"namespace": ns}).json()]
    assert name in names and "ünï.bin" in names
    r = user.get(f"/storage/download/{ns}/" + requests.utils.quote(name))
    assert r.status_code == 200 and r.content == b"u"
    assert "filename*=UTF-8''na%C3%AFve" in r.headers["Content-Disposition"]


def test_empty_file(user, ns):
    assert upload(user, ns, "empty", b"").status_code == 200
    r = user.get(f"/storage/{ns}/empty")
    assert r.status_code == 200 and r.content == b"" and r.headers["Content-Length"] == "0"
    assert user.get(f"/storage/{ns}/empty", headers={"Range": "bytes=0-"}).status_code == 416


def test_exists_is_409_and_overwrite_replaces(user, ns, tmp_path):
    src = tmp_path / "a.txt"
    src.write_bytes(b"one")
    assert curl_upload(user, src, namespace=ns)[0] == 200
    first = user.get("/storage/files", params={"namespace": ns}).json()[0]
    src.write_bytes(b"two!")
    status, body = curl_upload(user, src, namespace=ns)
    assert status == 409 and "error" in body
    assert curl_upload(user, src, namespace=ns, overwrite=False)[0] == 409
    assert user.get(f"/storage/{ns}/a.txt").content == b"one"
    time.sleep(1.1)
    assert curl_upload(user, src, namespace=ns, overwrite=True)[0] == 200
    assert user.get(f"/storage/{ns}/a.txt").content == b"two!"
    again = user.get("/storage/files", params={"namespace": ns}).json()[0]
    assert again["size"] == 4 and again["created_at"] == first["created_at"]
    assert again["modified_at"] > first["modified_at"]


def test_overwrite_as_form_field(user, ns):
    assert upload(user, ns, "f", b"1").status_code == 200
    r = user.post("/storage/upload", params={"namespace": ns}, data={"overwrite": "true"}, files={"file": ("f", b"2")})
    assert r.status_code == 200, r.text
    assert user.get(f"/storage/{ns}/f").content == b"2"


def test_delete(user, ns, appliance):
    assert upload(user, ns, "gone.txt", b"bye").status_code == 200
    before = blob_files(appliance)
    r = user.delete("/storage/delete", params={"name": "gone.txt", "namespace": ns})
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    # SeaweedFS keeps the blob its grace period for downloads under way (test below).
    assert len(before - blob_files(appliance)) == (0 if getattr(appliance, "weed", None) else 1)
    assert user.get(f"/storage/{ns}/gone.txt").status_code == 404
    r = user.delete("/storage/delete", params={"name": "gone.txt", "namespace": ns})
    assert r.status_code == 404 and "error" in r.json()
    assert requests.delete(user.base + "/storage/delete", params={"name": "x", "namespace": ns}).status_code == 401


def test_a_download_under_way_finishes_when_its_file_is_deleted(user, ns):
    data = os.urandom(40_000_000)   # ten 4 MiB filer windows: most not yet read at the delete
    assert upload(user, ns, "going.bin", data).status_code == 200
    with user.get(f"/storage/{ns}/going.bin", stream=True) as r:
        body = r.raw.read(65536)
        assert user.delete("/storage/delete", params={"name": "going.bin", "namespace": ns}).status_code == 200
        time.sleep(0.5)
        body += r.raw.read()
    assert len(body) == len(data) and body == data
    assert user.get(f"/storage/{ns}/going.bin").status_code == 404


def test_missing_things_are_404(user, ns):
    assert user.get(f"/storage/{ns}/nope").status_code == 404
    assert user.get("/storage/download", params={"namespace": ns, "name": "nope"}).status_code == 404
    assert user.get("/storage/no-such-ns/x").status_code == 404
    assert user.get("/storage/files", params={"namespace": "no-such-ns"}).status_code == 404
    assert user.post("/storage/upload", params={"namespace": "no-such-ns"},
                     files={"file": ("x", b"1")}).status_code == 404
    assert user.get("/storage/download", params={"namespace": ns}).status_code == 400  # no name


def test_status(appliance, user, ns):
    r = requests.get(appliance.url + "/storage/status")
    assert r.status_code == 200
    s = r.json()
    assert s["chunkserver_count"] == 1 and s["total_servers"] == 1
    assert s["capacity_bytes"] > 0 and 0 < s["free_bytes"] <= s["capacity_bytes"]
    assert 0 < s["used_bytes"] <= s["capacity_bytes"]
    assert s["backend"] == ("seaweedfs" if appliance.weed else "local-disk")
    assert (s["writable"], s["readable"], s["problem"]) == (True, True, "")
    # the counters count: one more file of 1234 bytes, then one less
    mine = user.get("/storage/status").json()
    assert upload(user, ns, "counted.bin", b"x" * 1234).status_code == 200
    after = user.get("/storage/status").json()
    assert after["file_count"] == mine["file_count"] + 1
    assert after["stored_bytes"] == mine["stored_bytes"] + 1234
    assert (mine["quota_used_bytes"], after["quota_used_bytes"]) == (0, 1234)
    assert user.delete("/storage/delete", params={"name": "counted.bin", "namespace": ns}).status_code == 200
    gone = user.get("/storage/status").json()
    assert (gone["file_count"], gone["stored_bytes"], gone["quota_used_bytes"]) == \
        (mine["file_count"], mine["stored_bytes"], 0)


# -- who may read ----------------------------------------------------------------

READ_URLS = [
    lambda ns: ("/storage/files", {"namespace": ns}),
    lambda ns: ("/storage/download", {"namespace": ns, "name": "f.txt"}),
    lambda ns: (f"/storage/{ns}/f.txt", {}),
    lambda ns: (f"/storage/download/{ns}/f.txt", {}),
]


@pytest.mark.local_only
@pytest.mark.parametrize("visibility,anonymous,other", [(0, 401, 403), (1, 200, 200), (2, 200, 200)])
@pytest.mark.parametrize("url", range(len(READ_URLS)))
def test_read_access_by_visibility(appliance, user, make_user, visibility, anonymous, other, url):
    name = unique_ns()
    user.post("/storage/namespaces", json={"name": name, "visibility": visibility})
    assert upload(user, name, "f.txt", b"data").status_code == 200
    path, params = READ_URLS[url](name)
    assert user.get(path, params=params).status_code == 200
    assert requests.get(appliance.url + path, params=params).status_code == anonymous
    assert make_user().get(path, params=params).status_code == other
    # Admins get no special read access to private namespaces.
    assert appliance.admin().get(path, params=params).status_code == other


@pytest.mark.local_only
def test_query_token_for_downloads_and_header_wins(appliance, user, ns, make_user):
    assert upload(user, ns, "f.txt", b"secret").status_code == 200
    r = requests.get(appliance.url + f"/storage/{ns}/f.txt", params={"token": user.token})
    assert r.status_code == 200 and r.content == b"secret"
    r = requests.get(appliance.url + "/storage/download",
                     params={"namespace": ns, "name": "f.txt", "token": user.token})
    assert r.status_code == 200
    other = make_user()
    r = requests.get(appliance.url + f"/storage/{ns}/f.txt", params={"token": user.token},
                     headers={"Authorization": f"Bearer {other.token}"})
    assert r.status_code == 403
    assert user.token not in appliance.log("http")


# -- who may write -----------------------------------------------------------------

@pytest.mark.local_only
@pytest.mark.parametrize("visibility", [0, 1, 2])
def test_only_the_owner_writes_a_namespace(appliance, user, make_user, visibility, tmp_path):
    name = unique_ns()
    user.post("/storage/namespaces", json={"name": name, "visibility": visibility})
    assert upload(user, name, "f", b"mine").status_code == 200
    other = make_user()
    src = tmp_path / "f"
    src.write_bytes(b"theirs")
    assert curl_upload(other, src, namespace=name, overwrite=True)[0] == 403
    assert upload(other, name, "new", b"x").status_code == 403
    assert other.put(f"/storage/{name}/new2", data=b"x").status_code == 403
    assert other.delete("/storage/delete", params={"namespace": name, "name": "f"}).status_code == 403
    assert appliance.admin().delete("/storage/delete", params={"namespace": name, "name": "f"}).status_code == 403
    assert curl_upload(other, src, namespace=name, token=None)[0] == 401
    assert user.get(f"/storage/{name}/f").content == b"mine"


@pytest.mark.local_only
def test_default_namespace_write_rules(appliance, make_user):
    alice, bob, admin = make_user(), make_user(), appliance.admin()
    name = f"{unique_ns('shared')}.txt"
    assert upload(alice, "default", name, b"alice").status_code == 200
    assert upload(bob, "default", name, b"bob").status_code == 409
    assert upload(bob, "default", name, b"bob", overwrite=True).status_code == 403
    assert bob.delete("/storage/delete", params={"name": name}).status_code == 403
    assert requests.get(alice.base + f"/storage/default/{name}").content == b"alice"
    assert upload(alice, "default", name, b"alice2", overwrite=True).status_code == 200
    assert upload(admin, "default", name, b"admin", overwrite=True).status_code == 200
    # The admin's upload made it theirs; alice may no longer replace it.
    assert upload(alice, "default", name, b"again", overwrite=True).status_code == 403
    assert admin.delete("/storage/delete", params={"name": name}).status_code == 200
    other = f"{unique_ns('shared')}.txt"
    assert upload(bob, "default", other, b"b").status_code == 200
    assert bob.delete("/storage/delete", params={"name": other, "namespace": "default"}).status_code == 200


@pytest.mark.local_only
def test_file_scopes_of_api_tokens(appliance, user):
    uid = user.user_id
    a, b = unique_ns(), unique_ns()
    for n in (a, b):
        user.post("/storage/namespaces", json={"name": n, "visibility": 0})
        assert upload(user, n, "f", b"x").status_code == 200
    reader = user.with_token(token(user, {f"storage.{uid}.files.{a}": ["read"]}))
    assert reader.get(f"/storage/{a}/f").status_code == 200
    assert reader.get("/storage/files", params={"namespace": a}).status_code == 200
    assert reader.get(f"/storage/{b}/f").status_code == 403
    assert reader.get("/storage/download", params={"namespace": b, "name": "f"}).status_code == 403
    assert upload(reader, a, "g", b"y").status_code == 403
    assert reader.delete("/storage/delete", params={"namespace": a, "name": "f"}).status_code == 403
    writer = user.with_token(token(user, {f"storage.{uid}.files.{a}": ["create", "delete"]}))
    assert upload(writer, a, "g", b"y").status_code == 200
    assert writer.put(f"/storage/{a}/h", data=b"z").status_code == 200
    assert upload(writer, b, "g", b"y").status_code == 403
    assert writer.delete("/storage/delete", params={"namespace": a, "name": "g"}).status_code == 200
    assert writer.get(f"/storage/{a}/f").status_code == 403
    assert requests.get(appliance.url + f"/storage/{a}/f", params={"token": reader.token}).status_code == 200
    # default: storage.<uid>.files.default
    shared = user.with_token(token(user, {f"storage.{uid}.files.default": ["create"]}))
    assert upload(shared, "default", f"{unique_ns('tok')}.txt", b"1").status_code == 200
    assert upload(shared, a, "zz", b"1").status_code == 403


# -- Range, HEAD, conditionals ----------------------------------------------------

@pytest.fixture
def ten(user, ns):
    assert upload(user, ns, "ten.bin", b"0123456789").status_code == 200
    return lambda **headers: user.get(f"/storage/{ns}/ten.bin", headers=headers)


@pytest.mark.parametrize("header,status,body,content_range", [
    ("bytes=0-4", 206, b"01234", "bytes 0-4/10"),
    ("bytes=5-", 206, b"56789", "bytes 5-9/10"),
    ("bytes=-3", 206, b"789", "bytes 7-9/10"),
    ("bytes=-30", 206, b"0123456789", "bytes 0-9/10"),
    ("bytes=8-100", 206, b"89", "bytes 8-9/10"),
    ("bytes=9-9", 206, b"9", "bytes 9-9/10"),
    ("bytes=0-0", 206, b"0", "bytes 0-0/10"),
    ("bytes=10-", 416, None, "bytes */10"),
    ("bytes=100-200", 416, None, "bytes */10"),
    ("bytes=-0", 416, None, "bytes */10"),
    ("bytes=5-2", 200, b"0123456789", None),          # invalid: ignored
    ("bytes=abc", 200, b"0123456789", None),
    ("items=0-1", 200, b"0123456789", None),
    ("bytes=0-1,4-5", 200, b"0123456789", None),      # multi-range: whole file
    # Positions are 1-19 ASCII digits; anything else is an invalid header (was 500).
    ("bytes=\u00b9-", 200, b"0123456789", None),      # superscript one: str.isdigit() says yes
    ("bytes=-\u00b2", 200, b"0123456789", None),
    ("bytes=0-" + "9" * 5000, 200, b"0123456789", None),
    ("bytes=" + "9" * 5000 + "-", 200, b"0123456789", None),
    ("bytes=0-" + "9" * 20, 200, b"0123456789", None),
    ("bytes=0-9999999999999999999", 206, b"0123456789", "bytes 0-9/10"),
])
def test_range(ten, header, status, body, content_range):
    r = ten(Range=header)
    assert r.status_code == status, r.text
    if body is not None:
        assert r.content == body and r.headers["Content-Length"] == str(len(body))
    else:
        assert "error" in r.json()
    assert r.headers.get("Content-Range") == content_range


def test_range_on_attachment_and_query_urls(user, ns):
    assert upload(user, ns, "r", b"abcdef").status_code == 200
    r = user.get(f"/storage/download/{ns}/r", headers={"Range": "bytes=1-2"})
    assert r.status_code == 206 and r.content == b"bc"
    r = user.get("/storage/download", params={"namespace": ns, "name": "r"}, headers={"Range": "bytes=-2"})
    assert r.status_code == 206 and r.content == b"ef"


def test_if_range(ten):
    etag = ten().headers["ETag"]
    last_modified = ten().headers["Last-Modified"]
    assert ten(Range="bytes=0-1", **{"If-Range": etag}).status_code == 206
    assert ten(Range="bytes=0-1", **{"If-Range": '"stale"'}).status_code == 200
    assert ten(Range="bytes=0-1", **{"If-Range": last_modified}).status_code == 206
    assert ten(Range="bytes=0-1", **{"If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200


def test_head(user, ns):
    assert upload(user, ns, "h.txt", b"head me").status_code == 200
    for path in (f"/storage/{ns}/h.txt", f"/storage/download/{ns}/h.txt"):
        r = user.head(path)
        assert r.status_code == 200 and r.content == b""
        assert r.headers["Content-Length"] == "7" and r.headers["ETag"] and r.headers["Last-Modified"]
    r = user.head(f"/storage/{ns}/h.txt", headers={"Range": "bytes=0-1"})
    assert r.status_code == 206 and r.headers["Content-Length"] == "2" and r.content == b""
    assert user.head(f"/storage/{ns}/missing").status_code == 404
    assert requests.head(user.base + f"/storage/{ns}/h.txt").status_code == 401


def test_conditional_requests(user, ns, ten):
    r = ten()
    etag, last_modified = r.headers["ETag"], r.headers["Last-Modified"]
    r = ten(**{"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["ETag"] == etag
    assert ten(**{"If-None-Match": f'"other", {etag}'}).status_code == 304
    assert ten(**{"If-None-Match": f"W/{etag}"}).status_code == 304
    assert ten(**{"If-None-Match": "*"}).status_code == 304
    assert ten(**{"If-None-Match": '"other"'}).status_code == 200
    assert ten(**{"If-Modified-Since": last_modified}).status_code == 304
    assert ten(**{"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200
    assert ten(**{"If-Modified-Since": "garbage"}).status_code == 200
    # If-None-Match wins over If-Modified-Since
    assert ten(**{"If-None-Match": '"other"', "If-Modified-Since": last_modified}).status_code == 200
    # A new upload is a new ETag.
    assert upload(user, ns, "ten.bin", b"changed", overwrite=True).status_code == 200
    r = ten(**{"If-None-Match": etag})
    assert r.status_code == 200 and r.content == b"changed" and r.headers["ETag"] != etag


# -- names and traversal ---------------------------------------------------------------

BAD_NAMES = ["..", ".", "a/b", "../../etc/passwd", "a\\b", "..\\x", "nul\x00byte", "bell\x07", "tab\tname",
             "new\nline", "del\x7f", "x" * 256, "é" * 128,
             # format characters (Unicode Cf) and line/paragraph separators
             "report\u202efdp.exe", "zero\u200bwidth", "bom\ufeff.txt", "iso\u2066late", "soft\u00adhyphen",
             "line\u2028sep", "para\u2029sep"]


@pytest.mark.local_only
@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_file_names_are_400_and_touch_nothing(appliance, user, ns, bad):
    before = blob_files(appliance)
    r = user.post("/storage/upload", params={"namespace": ns}, files={"file": (bad, b"evil")})
    assert r.status_code == 400, (bad, r.status_code, r.text)
    assert "error" in r.json()
    r = user.get("/storage/download", params={"namespace": ns, "name": bad})
    assert r.status_code == 400
    r = user.delete("/storage/delete", params={"namespace": ns, "name": bad})
    assert r.status_code == 400
    quoted = requests.utils.quote(bad, safe="")
    for method in ("get", "put"):
        r = getattr(user, method)(f"/storage/{ns}/{quoted}", data=b"evil" if method == "put" else None)
        # requests resolves "." and ".." segments itself (see test_traversal_in_raw_paths)
        assert r.status_code == (404 if bad in (".", "..") else 400), (method, bad, r.status_code)
    assert blob_files(appliance) == before
    assert user.get("/storage/files", params={"namespace": ns}).json() == []


def _multipart(disposition: str, data: bytes = b"content") -> tuple[bytes, dict]:
    body = (b"--rawB\r\nContent-Disposition: form-data; name=\"file\"; " + disposition.encode() +
            b"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--rawB--\r\n")
    return body, {"Content-Type": "multipart/form-data; boundary=rawB"}


@pytest.mark.local_only
@pytest.mark.parametrize("disposition", [
    "filename=noquote/../x", "filename=a/b", "filename=..", "filename=a\\b", "filename*=UTF-8''a%2Fb",
    "filename*=UTF-8''%E2%80%AEtxt.exe", "filename*=latin1''x", "filename*=UTF-8''%FF", 'filename="a/b"'])
def test_multipart_filenames_are_read_exactly_and_bad_ones_are_400(appliance, user, ns, disposition):
    """The multipart library reads a bare ``filename=noquote/../x`` as ``noquote``;
    the gateway reads what was sent, so the core refuses it instead of storing a
    name the client never asked for."""
    before = blob_files(appliance)
    body, headers = _multipart(disposition)
    r = user.post("/storage/upload", params={"namespace": ns}, data=body, headers=headers)
    assert r.status_code == 400 and "error" in r.json(), (disposition, r.status_code, r.text)
    assert user.get("/storage/files", params={"namespace": ns}).json() == []
    assert blob_files(appliance) == before


@pytest.mark.local_only
@pytest.mark.parametrize("disposition,name", [
    ("filename=noquote", "noquote"), ("filename = spaced.txt ", "spaced.txt"),
    ("filename*=UTF-8''%E2%82%AC%20rate.txt", "€ rate.txt"), ('filename="quoted.txt"', "quoted.txt")])
def test_multipart_filename_forms(user, ns, disposition, name):
    body, headers = _multipart(disposition, b"form")
    r = user.post("/storage/upload", params={"namespace": ns}, data=body, headers=headers)
    assert r.status_code == 200 and r.json()["name"] == name, r.text
    assert user.get(f"/storage/download/{ns}/" + requests.utils.quote(name, safe="")).content == b"form"


@pytest.mark.local_only
@pytest.mark.parametrize("value", ["\u00b9", "9" * 5000, "9" * 20, "9999999999999999999", "-1", "1e3", "1 2"])
def test_bad_x_file_size_is_400(appliance, user, ns, value):
    """Sizes are 1-19 ASCII digits within int64 (these were 500s)."""
    before = blob_files(appliance)
    r = user.post("/storage/upload", params={"namespace": ns}, files={"file": ("s", b"1")},
                  headers={"X-File-Size": value})
    assert r.status_code == 400 and "X-File-Size" in r.json()["error"], (value, r.status_code, r.text)
    r = user.put(f"/storage/{ns}/s", data=b"1", headers={"X-File-Size": value})
    assert r.status_code == 400 and "X-File-Size" in r.json()["error"], (value, r.status_code, r.text)
    assert blob_files(appliance) == before


@pytest.mark.local_only
def test_255_bytes_is_the_limit(user, ns):
    assert upload(user, ns, "x" * 255, b"ok").status_code == 200
    assert upload(user, ns, "é" * 127 + "x", b"ok").status_code == 200  # 255 bytes
    assert upload(user, ns, "é" * 128, b"no").status_code == 400        # 256 bytes


@pytest.mark.local_only
@pytest.mark.parametrize("bad_ns", ["..", ".", "../..", "a/b", "%2e%2e", "x" * 65, "a b"])
def test_bad_namespace_parameters_are_400(appliance, user, bad_ns):
    before = blob_files(appliance)
    assert user.post("/storage/upload", params={"namespace": bad_ns}, files={"file": ("f", b"x")}).status_code == 400
    assert user.get("/storage/files", params={"namespace": bad_ns}).status_code == 400
    assert user.get("/storage/download", params={"namespace": bad_ns, "name": "f"}).status_code == 400
    assert user.delete("/storage/delete", params={"namespace": bad_ns, "name": "f"}).status_code == 400
    assert blob_files(appliance) == before


@pytest.mark.local_only
def test_traversal_in_raw_paths(appliance, user, ns):
    """Encoded slashes and dot segments reach the router literally (curl --path-as-is)."""
    import subprocess
    before = blob_files(appliance)
    for path in (f"/storage/{ns}/..%2F..%2F..%2Fetc%2Fpasswd", f"/storage/{ns}/..", "/storage/../f",
                 f"/storage/{ns}/%2e%2e", f"/storage/download/{ns}/..%5Cx", "/storage/%2e%2e/x"):
        for method in ("GET", "PUT"):
            out = subprocess.run(["curl", "-sS", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}",
                                  "-X", method, "-H", f"Authorization: Bearer {user.token}",
                                  *(["--data-binary", "evil"] if method == "PUT" else []), appliance.url + path],
                                 capture_output=True, text=True)
            assert out.stdout in ("400", "404", "405"), (method, path, out.stdout)
    assert blob_files(appliance) == before


# -- raw PUT -------------------------------------------------------------------------------

def test_raw_put(appliance, user, ns, tmp_path):
    import subprocess
    src = tmp_path / "raw.bin"
    src.write_bytes(os.urandom(300_000))
    out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "-H", f"Authorization: Bearer {user.token}",
                          "-T", str(src), f"{appliance.url}/storage/{ns}/raw.bin"], capture_output=True, text=True)
    assert out.stdout.endswith("\n200"), out.stdout
    assert user.get(f"/storage/{ns}/raw.bin").content == src.read_bytes()
    assert user.put(f"/storage/{ns}/raw.bin", data=b"new").status_code == 409
    r = user.put(f"/storage/{ns}/raw.bin", params={"overwrite": "true"}, data=b"new")
    assert r.status_code == 200 and r.json()["name"] == "raw.bin" and r.json()["size"] == 3
    assert user.get(f"/storage/{ns}/raw.bin").content == b"new"
    assert requests.put(appliance.url + f"/storage/{ns}/anon", data=b"x").status_code == 401
    assert user.put("/storage/no-such-ns/x", data=b"x").status_code == 404
    # A literal "namespaces" segment is UpdateNamespace, never a raw upload.
    r = user.put(f"/storage/namespaces/{ns}", json={"hidden": True})
    assert r.status_code == 200 and r.json()["hidden"] is True


def test_raw_put_refusal_comes_before_the_body(appliance, user, ns):
    """With Expect: 100-continue a refused PUT never sends its body."""
    assert upload(user, ns, "taken", b"x").status_code == 200
    with socket.create_connection(("127.0.0.1", appliance.http_port)) as s:
        s.sendall((f"PUT /storage/{ns}/taken HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {user.token}\r\n"
                   "Content-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n").encode())
        s.settimeout(10)
        reply = s.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 409"), reply


# -- bodies that are not right --------------------------------------------------------------

@pytest.mark.local_only
def test_upload_body_problems(appliance, user, ns):
    base = {"namespace": ns}
    assert user.post("/storage/upload", params=base, data=b"not multipart").status_code == 400
    assert user.post("/storage/upload", params=base, files={"other": ("f", b"x")}).status_code == 400
    r = user.post("/storage/upload", params=base, data={"file": "a plain field"})
    assert r.status_code == 400
    r = user.post("/storage/upload", params=base, files=[("file", ("a", b"1")), ("file", ("b", b"2"))])
    assert r.status_code == 400
    r = user.post("/storage/upload", params=base, files={"file": ("s", b"12345")}, headers={"X-File-Size": "9"})
    assert r.status_code == 400 and "declared size" in r.json()["error"]
    r = user.post("/storage/upload", params=base, files={"file": ("s", b"12345")}, headers={"X-File-Size": "x"})
    assert r.status_code == 400
    r = user.post("/storage/upload", params={**base, "overwrite": "maybe"}, files={"file": ("s", b"1")})
    assert r.status_code == 400
    assert requests.post(appliance.url + "/storage/upload", files={"file": ("f", b"x")}).status_code == 401
    assert user.get("/storage/files", params=base).json() == []
    r = user.post("/storage/upload", params=base, files={"file": ("s", b"12345")}, headers={"X-File-Size": "5"})
    assert r.status_code == 200


def test_broken_upload_leaves_nothing(appliance, user, ns):
    """The client sends half a multipart body and disconnects."""
    before = blob_files(appliance)
    boundary = "xyzBOUNDARY"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"half.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", appliance.http_port)) as s:
        s.sendall((f"POST /storage/upload?namespace={ns} HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {user.token}\r\nContent-Length: 50000000\r\n"
                   f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode() + head)
        s.sendall(os.urandom(3_000_000))
        time.sleep(0.5)
    deadline = time.time() + 10
    while time.time() < deadline and blob_files(appliance) != before:
        time.sleep(0.1)
    assert blob_files(appliance) == before  # no blob, no temp file
    assert user.get(f"/storage/{ns}/half.bin").status_code == 404
    assert user.get("/storage/files", params={"namespace": ns}).json() == []


# -- concurrency --------------------------------------------------------------------------

def test_concurrent_uploads_of_one_name_exactly_one_wins(user, ns):
    payloads = [os.urandom(200_000) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda p: upload(user, ns, "race.bin", p).status_code, payloads))
    assert sorted(results) == [200] + [409] * 7, results
    winner = payloads[results.index(200)]
    assert user.get(f"/storage/{ns}/race.bin").content == winner
    assert len(user.get("/storage/files", params={"namespace": ns}).json()) == 1


def test_readers_see_old_or_new_never_a_mix(user, ns):
    size = 2_000_000
    versions = [bytes([i]) * size for i in range(6)]
    assert upload(user, ns, "flip.bin", versions[0]).status_code == 200
    hashes = {sha256(v) for v in versions}
    stop = threading.Event()
    seen, errors = [], []

    def reader():
        while not stop.is_set():
            try:
                r = user.get(f"/storage/{ns}/flip.bin")
            except requests.RequestException as e:  # a body cut short: the old blob went under the reader
                errors.append(repr(e))
                continue
            if r.status_code != 200 or len(r.content) != size:
                errors.append((r.status_code, len(r.content)))
            seen.append(sha256(r.content))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for v in versions[1:]:
        assert upload(user, ns, "flip.bin", v, overwrite=True).status_code == 200
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert seen and set(seen) <= hashes


# -- progress (SSE) ---------------------------------------------------------------------------

def watch_progress(appliance, events: list, opened: threading.Event | None = None, **request):
    """Collect /sse/progress events into *events* until one says done."""
    with requests.get(appliance.url + "/sse/progress", stream=True, timeout=30, **request) as r:
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        if opened is not None:
            opened.set()
        for line in r.iter_lines():
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
                if events[-1]["done"]:
                    return


def test_sse_progress_of_an_upload(appliance, user, ns):
    transfer = unique_ns("t")
    events, opened = [], threading.Event()

    def watch():
        watch_progress(appliance, events, opened, params={"id": transfer, "token": user.token})

    t = threading.Thread(target=watch)
    t.start()
    assert opened.wait(5), "the event stream must open before the transfer starts"
    data = os.urandom(5_000_000)
    r = user.post("/storage/upload", params={"namespace": ns, "id": transfer}, files={"file": ("p.bin", data)},
                  headers={"X-File-Size": str(len(data))})
    assert r.status_code == 200
    t.join(15)
    assert events and events[-1] == {"direction": "upload", "bytes": len(data), "total": len(data), "done": True}
    assert all(e["direction"] == "upload" for e in events)
    assert [e["bytes"] for e in events] == sorted(e["bytes"] for e in events)


def test_sse_progress_of_a_download_and_auth(appliance, user, ns, make_user):
    assert upload(user, ns, "d.bin", os.urandom(3_000_000)).status_code == 200
    transfer = unique_ns("d")
    events = []

    def watch():
        watch_progress(appliance, events, params={"id": transfer},
                       headers={"Authorization": f"Bearer {user.token}"})

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.3)
    assert user.get(f"/storage/{ns}/d.bin", params={"id": transfer}).status_code == 200
    t.join(15)
    assert events and events[-1]["direction"] == "download" and events[-1]["done"]
    assert events[-1]["bytes"] == 3_000_000
    assert requests.get(appliance.url + "/sse/progress", params={"id": "x"}).status_code == 401
    assert user.get("/sse/progress").status_code == 400
