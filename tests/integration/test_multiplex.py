"""The gateway's unary calls over one CallMultiplexer stream (appliance/http/multiplexed.py,
appliance/core/multiplexer.py): every carried call is authenticated on its own, answers
reach their own request, and the stream survives the core going away."""
import asyncio
import concurrent.futures
import time

import grpc
import pytest
import requests
from harness import Appliance

from appliance.config import Config
from appliance.contract import METHODS
from appliance.core.multiplexer import CallMultiplexerServicer
from appliance.http.multiplexed import Multiplexer
from appliance.http.server import core_channel
from appliance.v1 import auth_pb2, mux_pb2, mux_pb2_grpc

EXCHANGE = "/appliance.v1.CallMultiplexer/Exchange"
GET_SESSION = "/appliance.v1.AuthService/GetSession"


def exchange(appliance, *calls: mux_pb2.CarriedCall) -> dict[int, mux_pb2.CarriedReply]:
    """Send *calls* in one batch straight to the core's socket; replies by id."""
    with grpc.insecure_channel(f"unix://{appliance.data_dir}/core.sock") as channel:
        stream = channel.stream_stream(EXCHANGE, request_serializer=mux_pb2.CallBatch.SerializeToString,
                                       response_deserializer=mux_pb2.ReplyBatch.FromString)
        replies = {}
        for batch in stream(iter([mux_pb2.CallBatch(calls=calls)])):
            replies.update({r.id: r for r in batch.replies})
    assert sorted(replies) == sorted(c.id for c in calls)  # each call answered once
    return replies


def bearer(token: str) -> list[mux_pb2.MetadataEntry]:
    return [mux_pb2.MetadataEntry(key="authorization", value=f"Bearer {token}")]


def test_concurrent_requests_of_many_users_each_get_their_own_answer(appliance, make_user):
    users = [make_user() for _ in range(4)]
    r = users[0].post("/api/tokens", json={"name": "mux", "scopes": {f"compute.{users[0].user_id}": ["read"]}})
    assert r.status_code == 200, r.text
    api_token = r.json()["token"]
    cases = []  # (token, expected status, expected username or None)
    for i in range(160):
        kind = i % 6
        if kind < 4:
            cases.append((users[kind].token, 200, users[kind].info["username"]))
        elif kind == 4:
            cases.append(("not-a-token", 401, None))
        else:
            cases.append((api_token, 403, None))  # /api/session needs a session JWT

    def get(case):
        token, _, _ = case
        r = requests.get(appliance.url + "/api/session", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        return r.status_code, r.json()

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        results = list(pool.map(get, cases))
    for (_, status, username), (got_status, body) in zip(cases, results, strict=True):
        assert got_status == status, body
        if username:
            assert body["username"] == username
        else:
            assert set(body) == {"error"}


def test_core_answers_each_carried_call_by_its_own_guard(appliance, user, admin):
    login = auth_pb2.LoginRequest(username="admin", password=appliance.admin_password)
    replies = exchange(
        appliance,
        mux_pb2.CarriedCall(id=1, method=GET_SESSION, metadata=bearer(user.token),
                            request=auth_pb2.GetSessionRequest().SerializeToString()),
        mux_pb2.CarriedCall(id=2, method=GET_SESSION,
                            request=auth_pb2.GetSessionRequest().SerializeToString()),
        mux_pb2.CarriedCall(id=3, method="/appliance.v1.AuthService/ListUsers", metadata=bearer(user.token),
                            request=auth_pb2.ListUsersRequest().SerializeToString()),
        mux_pb2.CarriedCall(id=4, method="/appliance.v1.AuthService/ListUsers", metadata=bearer(admin.token),
                            request=auth_pb2.ListUsersRequest().SerializeToString()),
        mux_pb2.CarriedCall(id=5, method="/appliance.v1.AuthService/Login", request=login.SerializeToString()),
    )
    assert replies[1].code == 0
    assert auth_pb2.User.FromString(replies[1].response).user_id == user.user_id
    assert replies[2].code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert replies[3].code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert replies[4].code == 0
    names = {u.username for u in auth_pb2.ListUsersResponse.FromString(replies[4].response).users}
    assert {"admin", user.info["username"]} <= names
    assert replies[5].code == 0 and auth_pb2.LoginResponse.FromString(replies[5].response).token


def test_core_refuses_what_it_cannot_carry(appliance, user):
    replies = exchange(
        appliance,
        mux_pb2.CarriedCall(id=7, method="/appliance.v1.AuthService/NoSuchMethod", metadata=bearer(user.token)),
        # Streaming RPCs keep their own gRPC calls.
        mux_pb2.CarriedCall(id=8, method="/appliance.v1.StorageService/Upload", metadata=bearer(user.token)),
        mux_pb2.CarriedCall(id=9, method=GET_SESSION, metadata=bearer(user.token), request=b"\xff\xff\xff"),
    )
    assert replies[7].code == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert replies[8].code == grpc.StatusCode.UNIMPLEMENTED.value[0]
    assert replies[9].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_retry_after_travels_back_with_the_error(tmp_path):
    app = Appliance(tmp_path / "app", login_max_failures=2).start()
    try:
        for _ in range(2):
            r = requests.post(app.url + "/api/login", json={"username": "admin", "password": "wrong-one"})
            assert r.status_code == 401
        r = requests.post(app.url + "/api/login", json={"username": "admin", "password": "wrong-one"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    finally:
        app.close()


@pytest.mark.parametrize("multiplex", ["true", "false"])
def test_gateway_outlives_a_core_restart(tmp_path, multiplex):
    app = Appliance(tmp_path / "app", gateway_multiplex=multiplex).start()
    try:
        admin = app.admin()
        assert admin.get("/api/session").status_code == 200
        started = time.monotonic()
        app.stop("core")  # SIGTERM; the open call stream must not hold the stop
        assert time.monotonic() - started < 4
        r = admin.get("/api/session")
        assert r.status_code == 503 and r.json() == {"error": "backend unavailable"}
        app.start("core")
        # A worker may still wait out its reconnect backoff (at most 1 s);
        # the multiplexed path waits for the connection instead of failing.
        statuses = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            statuses.append(admin.get("/api/session").status_code)
            if statuses[-1] == 200:
                break
            time.sleep(0.1)
        assert statuses[-1] == 200
        if multiplex == "true":
            assert statuses == [200]
        assert "Traceback" not in app.log("http")
    finally:
        app.close()


def test_calls_queued_together_are_split_into_messages_grpc_accepts(tmp_path):
    """24 calls of 0.9 MiB queued in one go (21.6 MiB, a gRPC message may carry
    8): the gateway must split them over several messages, the core its replies,
    and each reply must reach its own caller. A reply too large for any message
    fails alone, RESOURCE_EXHAUSTED, and the stream goes on."""
    path = "/appliance.v1.AuthService/CreateToken"

    arrived, all_in = [], asyncio.Event()

    async def create_token(request, context):
        if request.name == "too-big":
            return auth_pb2.CreatedToken(name="r" * (7 * 1024 * 1024 + 1))
        if len(request.name) > 1024:  # the big ones answer together: one pile of replies
            arrived.append(request.name)
            if len(arrived) == 24:
                all_in.set()
            await all_in.wait()
        return auth_pb2.CreatedToken(name=request.name[::-1])

    async def scenario():
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 8 << 20),
                                          ("grpc.max_send_message_length", 8 << 20)])
        handler = grpc.unary_unary_rpc_method_handler(
            create_token, request_deserializer=auth_pb2.CreateTokenRequest.FromString,
            response_serializer=auth_pb2.CreatedToken.SerializeToString)
        mux_pb2_grpc.add_CallMultiplexerServicer_to_server(CallMultiplexerServicer({path: handler}), server)
        server.add_insecure_port(f"unix:{tmp_path}/core.sock")
        await server.start()
        channel = core_channel(Config(data_dir=str(tmp_path)))
        multiplexer = Multiplexer(channel)
        call = multiplexer.unary(METHODS[path])
        try:
            names = [f"{i:04d}" + "n" * (900 * 1024) for i in range(24)]
            replies = await asyncio.gather(*(call(auth_pb2.CreateTokenRequest(name=n)) for n in names))
            assert [r.name for r in replies] == [n[::-1] for n in names]
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await call(auth_pb2.CreateTokenRequest(name="too-big"))
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert (await call(auth_pb2.CreateTokenRequest(name="ab"))).name == "ba"
        finally:
            await multiplexer.close()
            await channel.close()
            await server.stop(None)

    asyncio.run(scenario())
