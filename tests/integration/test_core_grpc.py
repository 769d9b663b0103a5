"""The core on its own socket: auth is enforced there, not only in the gateway."""
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from appliance.v1 import auth_pb2, auth_pb2_grpc, sshgw_pb2, sshgw_pb2_grpc


@pytest.fixture
def channel(appliance):
    with grpc.insecure_channel(f"unix://{appliance.data_dir}/core.sock") as ch:
        yield ch


def test_health_service_reports_serving(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    assert stub.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    reply = stub.Check(health_pb2.HealthCheckRequest(service="appliance.v1.AuthService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_our_services(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"appliance.v1.AuthService", "grpc.health.v1.Health"} <= names


def test_core_refuses_calls_without_a_token(channel):
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    with pytest.raises(grpc.RpcError) as e:
        stub.ListUsers(auth_pb2.ListUsersRequest())
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_core_applies_access_policy_to_direct_calls(channel, user, admin):
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    md = (("authorization", f"Bearer {user.token}"),)
    assert stub.GetSession(auth_pb2.GetSessionRequest(), metadata=md).user_id == user.user_id
    with pytest.raises(grpc.RpcError) as e:
        stub.ListUsers(auth_pb2.ListUsersRequest(), metadata=md)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    admin_md = (("authorization", f"Bearer {admin.token}"),)
    assert len(stub.ListUsers(auth_pb2.ListUsersRequest(), metadata=admin_md).users) >= 2


def test_socket_is_not_world_accessible(appliance):
    import stat
    mode = stat.S_IMODE((appliance.data_dir / "core.sock").stat().st_mode)
    assert mode & 0o007 == 0


def test_user_tokens_cannot_call_the_internal_service(channel, user, admin):
    """The core refuses a user's (even an admin's) token on the gateway's RPC (ACCESS_SERVICE)."""
    stub = sshgw_pb2_grpc.SshGatewayServiceStub(channel)
    request = sshgw_pb2.AuthorizeRequest(username="x", public_key="ssh-ed25519 AAAA")
    for client in (user, admin):
        with pytest.raises(grpc.RpcError) as e:
            stub.Authorize(request, metadata=(("authorization", f"Bearer {client.token}"),), timeout=5)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as e:
        stub.Authorize(request, timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
