"""Storage rules without processes: names, Range parsing, conditionals, multipart filenames."""
import pytest

from appliance.core.storage import rules as storage
from appliance.core.storage.blobs import BlobStore
from appliance.errors import Invalid
from appliance.http.multipart_headers import raw_filename
from appliance.http.upload_parts import parse_size
from appliance.v1 import storage_pb2


@pytest.mark.parametrize("header,size,expected", [
    ("bytes=0-4", 10, (0, 4)), ("bytes=5-", 10, (5, 9)), ("bytes=-3", 10, (7, 9)), ("bytes=-30", 10, (0, 9)),
    ("bytes=8-100", 10, (8, 9)), (" bytes = 1 - 2 ", 10, (1, 2)), ("BYTES=0-0", 10, (0, 0)),
    ("bytes=5-2", 10, None), ("bytes=x-", 10, None), ("items=0-1", 10, None), ("bytes=0-1,3-4", 10, None),
    ("bytes=", 10, None), ("bytes=-", 10, None), ("bytes=1", 10, None),
    # 1-19 ASCII digits only (these raised ValueError: a 500)
    ("bytes=\u00b9-", 10, None), ("bytes=-\u00b2", 10, None), ("bytes=\u0661-", 10, None),
    ("bytes=0-" + "9" * 5000, 10, None), ("bytes=" + "9" * 20 + "-", 10, None),
    ("bytes=0-9999999999999999999", 10, (0, 9)),
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


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "a\x00b", "a\x1fb", "a\x7fb", "a\x85b",
                                  "x" * 256, "é" * 128, "a\u202eb", "a\u200bb", "a\ufeffb", "a\u2066b", "a\u00adb",
                                  "a\u2028b", "a\u2029b"])
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


def _part(disposition: bytes) -> bytes:
    return b'--B\r\nContent-Disposition: form-data; name="file"; ' + disposition + b'\r\n\r\ndata'


@pytest.mark.parametrize("disposition,name", [
    (b"filename=noquote/../x", "noquote/../x"), (b"filename = bare.txt ", "bare.txt"),
    (b"filename*=UTF-8''%E2%82%AC", "\u20ac"), (b'filename="x"; filename*=utf-8\'\'y', "y"),
    (b'filename=""', ""),
])
def test_raw_multipart_filename_forms(disposition, name):
    assert raw_filename(_part(disposition), b"B") == name


@pytest.mark.parametrize("head", [_part(b"filename*=latin1''x"), _part(b"filename*=UTF-8''%FF"),
                                  _part(b'filename="\xff"'), b"--B\r\nContent-Disposition: form-data; name=",
                                  b"no delimiter at all"])
def test_unreadable_multipart_filenames_are_refused(head):
    with pytest.raises(Invalid):
        raw_filename(head, b"B")


@pytest.mark.parametrize("raw,value", [("", 0), ("0", 0), (" 42 ", 42), ("9223372036854775807", (1 << 63) - 1)])
def test_parse_size(raw, value):
    assert parse_size(raw, "X-File-Size") == value


@pytest.mark.parametrize("raw", ["\u00b9", "\u0661", "-1", "1e3", "9" * 20, "9223372036854775808", "9" * 5000])
def test_parse_size_refuses(raw):
    with pytest.raises(Invalid):
        parse_size(raw, "X-File-Size")


def _watch_run(feed, seconds=0.2, min_rate=100, duration=0.9):
    """Run a BodyWatch for *duration* while feed(watch, elapsed) is called every 10 ms."""
    import asyncio

    from appliance.http.upload_watch import BodyWatch

    async def main():
        stalls, alive = [], []
        watch = BodyWatch(seconds, min_rate, stalls.append, lambda: alive.append(1))
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < duration and not stalls:
            await feed(watch, loop.time() - start)
            await asyncio.sleep(0.01)
        watch.stop()
        return stalls, alive
    return asyncio.run(main())


def test_body_watch_cuts_an_idle_body():
    async def nothing(watch, t):
        pass
    stalls, _ = _watch_run(nothing)
    assert stalls and "0 bytes" in stalls[0]


def test_body_watch_cuts_a_trickle_below_the_rate():
    async def trickle(watch, t):  # 1 byte every 10 ms = ~100 B/s... minus scheduling: below 1000 B/s
        watch.arrived(1)
    stalls, _ = _watch_run(trickle, min_rate=1000)
    assert stalls


def test_body_watch_keeps_a_body_above_the_rate_and_reports_it_alive():
    async def steady(watch, t):
        watch.arrived(100)  # ~10 kB/s
    stalls, alive = _watch_run(steady, min_rate=1000)
    assert not stalls and len(alive) >= 2


def test_body_watch_does_not_count_time_spent_waiting_for_the_core():
    import asyncio

    async def blocked(watch, t):
        with watch.busy():  # the handler waits (back-pressure): the client cannot send
            await asyncio.sleep(0.3)
    stalls, _ = _watch_run(blocked, min_rate=1000)
    assert not stalls
