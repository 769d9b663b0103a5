"""A client generated from the served /openapi.json works, as a new user would try it (issue 11).

openapi-python-client turns the document into a package: modules per tag
(``api/auth``, ``api/compute``, ``api/storage``), functions named after the
RPCs (``login``, ``get_session``, ``list_containers``, ``create_namespace``)
and typed models. The test generates it into a temp dir, imports it and calls
a few operations against a real core + gateway.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from harness import Appliance

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("client"), guest_driver="fake")
    a.start()
    yield a
    a.close()


@pytest.fixture(scope="module")
def generated(app, tmp_path_factory):
    """The generated package ``appliance_client``, imported from a temp dir."""
    out = tmp_path_factory.mktemp("generated")
    doc = out / "openapi.json"
    doc.write_text(json.dumps(requests.get(app.url + "/openapi.json").json()))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(BIN / "openapi-python-client"), "generate", "--path", str(doc),
                           "--output-path", str(out / "appliance_client"), "--meta", "none"],
                          env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("appliance_client")
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == "appliance_client" or m.startswith("appliance_client.")]:
            del sys.modules[name]


def test_operations_are_grouped_by_service_and_named_after_their_rpcs(generated):
    api = Path(generated.__file__).parent / "api"
    modules = {p.parent.name + "." + p.stem for p in api.glob("*/*.py") if p.stem != "__init__"}
    assert {"auth.login", "auth.get_session", "auth.create_token", "auth.delete_user_by_query",
            "compute.create_container", "compute.list_containers", "compute.watch_containers",
            "storage.upload", "storage.put_file", "storage.download_by_path", "storage.create_namespace",
            "meta.healthz"} <= modules
    assert not (api / "default").exists()
    assert not [m for m in modules if any(ch.isdigit() for ch in m)], modules  # no upload_post_15


def test_a_generated_client_signs_in_and_uses_the_api(generated, app):
    from appliance_client import AuthenticatedClient, Client
    from appliance_client.api.auth import get_session, login
    from appliance_client.api.compute import list_containers
    from appliance_client.api.storage import create_namespace, list_namespaces
    from appliance_client.models import CreateNamespaceRequest, Error, LoginRequest

    anonymous = Client(base_url=app.url)
    wrong = login.sync_detailed(client=anonymous, body=LoginRequest(username="admin", password="nope"))
    assert wrong.status_code == 401 and isinstance(wrong.parsed, Error)
    assert wrong.parsed.error == "invalid username or password"

    signed_in = login.sync(client=anonymous, body=LoginRequest(username="admin", password=app.admin_password))
    assert signed_in.username == "admin" and signed_in.is_admin is True and signed_in.token
    client = AuthenticatedClient(base_url=app.url, token=signed_in.token)

    session = get_session.sync(client=client)
    assert (session.username, session.user_id) == ("admin", signed_in.user_id)

    containers = list_containers.sync(client=client)
    assert containers.containers == []

    ns = create_namespace.sync(client=client, body=CreateNamespaceRequest(name="gen-client", visibility=2))
    assert (ns.name, ns.visibility, ns.owner_id) == ("gen-client", 2, signed_in.user_id)
    taken = create_namespace.sync_detailed(client=client, body=CreateNamespaceRequest(name="gen-client"))
    assert taken.status_code == 409 and isinstance(taken.parsed, Error) and taken.parsed.error
    listed = list_namespaces.sync(client=client)
    assert "gen-client" in [n.name for n in listed]
