"""Storage rules without processes: names, Range parsing, conditionals, multipart filenames."""
import pytest

from appliance.core import storage_rules as storage
from appliance.core.files import BlobStore
from appliance.errors import Invalid
from appliance.http.upload_parts import raw_filename
from appliance.v1 import storage_pb2


@pytest.mark.parametrize("header,size,expected", [
    ("bytes=0-4", 10, (0, 4)), ("bytes=5-", 10, (5, 9)), ("bytes=-3", 10, (7, 9)), ("bytes=-30", 10, (0, 9)),
    ("bytes=8-100", 10, (8, 9)), (" bytes = 1 - 2 ", 10, (1, 2)), ("BYTES=0-0", 10, (0, 0)),
    ("bytes=5-2", 10, None), ("bytes=x-", 10, None), ("items=0-1", 10, None), ("bytes=0-1,3-4", 10, None),
    ("bytes=", 10, None), ("bytes=-", 10, None), ("bytes=1", 10, None),
])
def test_parse_range(header, size, expected):
    assert storage.parse_range(header, size) == expected


@pytest.mark.parametrize("header,size", [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0), ("bytes=-5", 0)])
def test_unsatisfiable_ranges(header, size):
    with pytest.raises(storage.RangeNotSatisfiable) as e:
        storage.parse_range(header, size)
    assert e.value.trailing_metadata() == (("x-file-size", str(size)),)


@pytest.mark.parametrize("name", ["a.txt", "x" * 255, "é" * 127, "with space", "...", ".hidden", "a..b", "ü📄"])
def test_good_file_names(name):
    assert storage.file_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "a\x00b", "a\x1fb", "a\x7fb", "a\x85b", "x" * 256, "é" * 128])
def test_bad_file_names(name):
    with pytest.raises(Invalid):
        storage.file_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "ü", "x" * 65, "a b"])
def test_bad_namespace_names(name):
    with pytest.raises(Invalid):
        storage.namespace_name(name)


def test_conditionals():
    req = storage_pb2.DownloadRequest(if_none_match='"a", W/"b"')
    assert storage.not_modified(req, '"b"', 100)
    assert not storage.not_modified(req, '"c"', 100)
    req = storage_pb2.DownloadRequest(if_modified_since="Thu, 01 Jan 1970 00:01:40 GMT")
    assert storage.not_modified(req, '"x"', 100) and not storage.not_modified(req, '"x"', 101)
    assert storage.range_applies(storage_pb2.DownloadRequest(if_range='"e"'), '"e"', 1)
    assert not storage.range_applies(storage_pb2.DownloadRequest(if_range='W/"e"'), '"e"', 1)


def test_raw_multipart_filename_keeps_what_the_client_sent():
    head = (b'--B\r\nContent-Disposition: form-data; name="namespace"\r\n\r\nx\r\n'
            b'--B\r\nContent-Disposition: form-data; name="file"; filename="a\\b%22q.txt"\r\n\r\ndata')
    assert raw_filename(head, b"B") == 'a\\b"q.txt'
    assert raw_filename(b'--B\r\nContent-Disposition: form-data; name="file"\r\n\r\n', b"B") is None
    assert raw_filename(b'--B\r\nContent-Disposition: form-data; name="file"; filename="new%0Aline"\r\n\r\n',
                        b"B") == "new\nline"


def test_blob_store_commit_and_sweep(tmp_path):
    store = BlobStore(tmp_path)
    store.prepare()
    tmp = store.new_temp()
    tmp.write(b"hello")
    blob = tmp.commit()
    assert store.blob_path(blob).read_bytes() == b"hello"
    assert not list(store.tmp_dir.iterdir())
    left = store.new_temp()
    left.write(b"half")
    other = store.new_temp().commit()
    assert store.sweep({blob}) == (1, 1)
    assert store.blob_path(blob).exists() and not store.blob_path(other).exists()
    with pytest.raises(ValueError):
        store.blob_path("../../etc/passwd")
