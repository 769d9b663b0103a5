"""Auth under attack (issue 11 items 3, 4, 5, 9; issue 19 item 7): real core and
gateway, real concurrent HTTP clients, memory and logs of the real core."""
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import requests
from harness import PRODUCTION_HASHES, Appliance

from appliance.v1 import sshgw_pb2, sshgw_pb2_grpc


def rss_bytes(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def concurrently(n: int, fn):
    """Run fn(i) in n threads released together by a barrier; results in order."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        return fn(i)
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def timed_post(url, **kwargs):
    started = time.monotonic()
    r = requests.post(url, timeout=120, **kwargs)
    return r, time.monotonic() - started


@pytest.fixture
def fresh(tmp_path):
    """fresh(**settings) -> a started Appliance of its own (counters start empty). The login
    tests hash at the production cost (PRODUCTION_HASHES): what they prove depends on it."""
    apps = []

    def start(**settings):
        app = Appliance(tmp_path / f"app{len(apps)}", **settings).start()
        apps.append(app)
        return app
    yield start
    for app in apps:
        app.close()


# -- item 3: the throttle counts an attempt before verifying it -------------------

def test_concurrent_wrong_logins_verify_at_most_the_limit(fresh):
    app = fresh(**PRODUCTION_HASHES)  # login_max_failures = 5 (default)
    limit = 5
    results = concurrently(25, lambda i: timed_post(
        app.url + "/api/login", json={"username": "admin", "password": f"wrong-{i}"}))
    codes = Counter(r.status_code for r, _ in results)
    assert set(codes) <= {401, 429}, codes
    assert 1 <= codes[401] <= limit, codes
    assert all(int(r.headers["Retry-After"]) > 0 for r, _ in results if r.status_code == 429)
    # The core logs each verification it ran: no more than the 401s.
    time.sleep(0.2)
    verified = app.log("core").count("login: 'admin' failed")
    assert verified == codes[401]
    # Concurrent attempts of one address mostly find one already verifying
    # (429, nothing counted: appliance/core/auth/inflight.py); the ones verified
    # count, so the rest of the limit, one at a time, locks the pair out,
    # even with the right password.
    for i in range(limit - codes[401]):
        r = requests.post(app.url + "/api/login", json={"username": "admin", "password": f"wrong-again-{i}"})
        assert r.status_code == 401, r.text
    r = requests.post(app.url + "/api/login", json={"username": "admin", "password": app.admin_password})
    assert r.status_code == 429


def test_one_address_spraying_users_concurrently_is_capped_per_address(fresh):
    app = fresh(login_max_failures=2, **PRODUCTION_HASHES)  # 8 per address
    results = concurrently(24, lambda i: timed_post(
        app.url + "/api/login", json={"username": f"nobody{i}", "password": "x"}))
    codes = Counter(r.status_code for r, _ in results)
    assert set(codes) <= {401, 429} and 1 <= codes[401] <= 8, codes
    time.sleep(0.2)
    assert app.log("core").count("(unknown user)") == codes[401]


# -- item 4 and issue 19 item 7: long usernames ------------------------------------

def test_oversized_usernames_are_400_and_cost_the_core_nothing(fresh):
    app = fresh()
    pid = app.procs["core"].pid
    body = 1 << 20  # the gateway's JSON limit: the name fills the body

    def login(i):
        name = f"{i:03d}" + "u" * (body - 100)
        return requests.post(app.url + "/api/login", json={"username": name, "password": "x"}, timeout=60)
    # Passing 1 MiB through gRPC costs some buffers; they level off after ~10
    # calls (measured: +8 MiB, then +-3 MiB, with an occasional 8 MiB arena
    # step), so that is not what is measured. What is: 48 more logins. Before
    # the fix every name stayed in the throttle, ~1 MiB each (+48 MiB or more);
    # a fixed step of buffers stays well under half of that.
    for i in range(10):
        login(i)
    log_before = len(app.log("core"))
    before = rss_bytes(pid)
    responses = [login(i) for i in range(10, 58)]
    grown = rss_bytes(pid) - before
    print(f"core RSS {before / 2**20:.1f} MiB, +{grown / 2**20:.1f} MiB after 48 logins with 1 MiB names")
    assert grown < 20 * 1024 * 1024, f"core grew {grown / 2**20:.1f} MiB"
    assert [r.status_code for r in responses] == [400] * 48
    assert "64" in responses[0].json()["error"]
    log = app.log("core")[log_before:]
    assert "uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu" not in log
    assert len(log) < 48 * 500  # one JSON line a call (~350 characters: message and attributes)
    # The same limit on creation (and the name 64 long is fine for both).
    admin = app.admin()
    assert admin.post("/admin/users", json={"username": "n" * 65, "password": "pw-1"}).status_code == 400
    assert admin.post("/admin/users", json={"username": "n" * 64, "password": "pw-1"}).status_code == 200
    assert app.login("n" * 64, "pw-1").info["username"] == "n" * 64


def test_core_log_lines_clip_user_supplied_names(appliance):
    """The core's SSH admission log named the refused user whole: 200 KB per attempt."""
    secret = (appliance.data_dir / "service_secret").read_text().strip()
    name = "x" * 200_000 + ".abcd1234"
    before = len(appliance.log("core"))
    with grpc.insecure_channel(f"unix://{appliance.data_dir}/core.sock") as channel:
        stub = sshgw_pb2_grpc.SshGatewayServiceStub(channel)
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as refused:
                stub.Authorize(sshgw_pb2.AuthorizeRequest(username=name, public_key="ssh-ed25519 AAAA",
                                                          client_address="127.0.0.1"),
                               metadata=(("authorization", f"Bearer {secret}"),))
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    time.sleep(0.2)
    added = appliance.log("core")[before:]
    assert f"ssh: refused {'x' * 64!r}+{len(name) - 64} chars" in added
    assert len(added) < 3 * 900, len(added)  # two JSON lines an attempt (~630 characters)


# -- item 5: argon2 has its own bounded pool ---------------------------------------

def test_anonymous_logins_do_not_starve_storage(fresh):
    app = fresh(login_max_failures=1000, **PRODUCTION_HASHES)  # only the hashing pool limits here
    admin = app.admin()

    def upload(i):
        started = time.monotonic()
        r = admin.post("/storage/upload?namespace=default&overwrite=true",
                       files={"file": (f"tiny-{i}", b"x")}, timeout=120)
        assert r.status_code == 200, r.text
        return time.monotonic() - started
    for i in range(3):
        upload(i)
    idle = statistics.median(upload(i) for i in range(15))

    storm_done = threading.Event()
    busy: list[float] = []

    def measure():
        time.sleep(0.05)  # the logins are in flight
        i = 100
        while not storm_done.is_set() or len(busy) < 5:
            busy.append(upload(i))
            i += 1
    meter = threading.Thread(target=measure)
    meter.start()
    try:
        results = concurrently(24, lambda i: timed_post(
            app.url + "/api/login", json={"username": f"anon{i}", "password": "guess"}))
    finally:
        storm_done.set()
        meter.join()
    codes = Counter(r.status_code for r, _ in results)
    refused = [t for r, t in results if r.status_code == 429]
    verified = [t for r, t in results if r.status_code == 401]
    print(f"upload idle {idle * 1000:.1f} ms, under logins {statistics.median(busy) * 1000:.1f} ms "
          f"({len(busy)} uploads); logins {dict(codes)}, 429 in <= {max(refused or [0]) * 1000:.0f} ms, "
          f"401 in <= {max(verified or [0]) * 1000:.0f} ms")
    ratio = statistics.median(busy) / idle
    assert set(codes) <= {401, 429}, codes
    assert codes[429] >= 1, codes  # the pool is full: refused, not queued
    assert all(r.headers.get("Retry-After") for r, _ in results if r.status_code == 429)
    # Refused before any verification ends, not after waiting in a queue.
    assert max(refused) < 2.0 and statistics.median(refused) < min(verified), (refused, verified)
    assert ratio < 5, f"upload {idle * 1000:.0f} ms idle, {statistics.median(busy) * 1000:.0f} ms under logins"


# -- item 9: API tokens and scopes are bounded ---------------------------------------

def test_tokens_per_user_are_capped(fresh):
    app = fresh(max_tokens_per_user=3)
    user = app.admin()
    scopes = {f"compute.{user.user_id}": ["read"]}
    ids = [user.post("/api/tokens", json={"name": f"t{i}", "scopes": scopes}).json()["id"] for i in range(3)]
    r = user.post("/api/tokens", json={"name": "one-too-many", "scopes": scopes})
    assert r.status_code == 409 and "at most 3" in r.json()["error"]
    assert len(user.get("/api/tokens").json()) == 3
    assert user.delete(f"/api/tokens/{ids[0]}").status_code == 200
    assert user.post("/api/tokens", json={"name": "fits-again", "scopes": scopes}).status_code == 200


def test_default_token_cap_is_50(user):
    scopes = {f"storage.{user.user_id}": ["read"]}
    for i in range(50):
        assert user.post("/api/tokens", json={"name": f"t{i}", "scopes": scopes}).status_code == 200
    r = user.post("/api/tokens", json={"name": "t50", "scopes": scopes})
    assert r.status_code == 409 and "error" in r.json()
    assert len(user.get("/api/tokens").json()) == 50


@pytest.mark.parametrize("make_scopes,needle", [
    # The report's 600 KB scope (it made an 800 KB token).
    (lambda uid: {f"storage.{uid}.files.{'n' * 600_000}": ["read"]}, "at most 64"),
    (lambda uid: {f"compute.{uid}.containers.{'c' * 65}": ["read"]}, "at most 64"),
    # Non-ASCII ids: 12 bytes of JSON per character (red team: a 34 KB token).
    (lambda uid: {f"storage.{uid}.files.{chr(0x1F600) * 10}": ["read"]}, "A-Z a-z 0-9"),
    (lambda uid: {f"storage.{uid}.namespaces.ns{i}": ["read"] for i in range(33)}, "at most 32"),
    (lambda uid: {f"compute.{'u' * 100_000}": ["read"]}, "owner"),
    (lambda uid: {f"compute.{uid}": ["r" * 100_000]}, "action"),
    (lambda uid: {f"compute.{uid}": [{"read": 1}]}, "action"),
    (lambda uid: {f"compute.{uid}": [["read"]]}, "action"),
])
def test_oversized_or_odd_scopes_are_400_and_create_nothing(user, make_scopes, needle):
    r = user.post("/api/tokens", json={"name": "big", "scopes": make_scopes(user.user_id)})
    assert r.status_code == 400, r.text[:300]
    assert needle in r.json()["error"] and len(r.text) < 1000
    assert user.get("/api/tokens").json() == []


def test_largest_allowed_scopes_make_a_bounded_token(user):
    uid = user.user_id
    scopes = {f"storage.{uid}.files.{i:02d}" + "n" * 62: ["create", "delete", "read", "update"]
              for i in range(32)}
    r = user.post("/api/tokens", json={"name": "widest", "scopes": scopes})
    assert r.status_code == 200, r.text[:300]
    assert len(r.json()["token"]) < 8 * 1024
    assert user.with_token(r.json()["token"]).get("/storage/namespaces").status_code == 200
