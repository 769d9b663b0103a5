"""Fuzz every operation of the served /openapi.json with schemathesis (issue 11).

A real core + gateway (``guest_driver=fake``: no guests, no lock needed).
Each operation gets a fixed, derandomized budget of schema-conforming
(positive) and schema-violating (negative) requests, as a normal user (admin
operations as the admin), first with generated parameters, then (valid
requests only) on real resources, with a narrowly scoped API token and as the
owner. Every response must be < 500 and conform to
the document: a documented status code, content type, required headers and,
for JSON, the documented schema; a request that violates the document must
get a 4xx. All failures are collected and reported at the end with a curl
line each, so one run lists every finding.

Budget: ``FUZZ_EXAMPLES`` per operation and mode (env APPLIANCE_FUZZ_EXAMPLES);
at least ``MIN_CASES`` requests in all. APPLIANCE_FUZZ_SEED=N runs other requests.
"""
from __future__ import annotations

import os
import socket
import time

import hypothesis
import pytest
import requests
import schemathesis
from compute_support import add_key
from harness import Appliance
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

FUZZ_EXAMPLES = int(os.environ.get("APPLIANCE_FUZZ_EXAMPLES", "12"))
MIN_CASES = 1000
# Default: derandomized (the same requests every run); APPLIANCE_FUZZ_SEED=N explores other ones.
SEED = int(os.environ["APPLIANCE_FUZZ_SEED"]) if os.environ.get("APPLIANCE_FUZZ_SEED") else None
# No new request after this many seconds (bounds `make test` on a slow machine; the
# >= MIN_CASES assertion still has to hold). About 80 s on an idle 2-core machine.
TIME_BUDGET = 180.0
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance,
          negative_data_rejection]  # a request that violates the document must get a 4xx
LOGOUT_SESSIONS = 8


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("fuzz"), guest_driver="fake", max_upload_bytes=1 << 20)
    a.start()
    yield a
    a.close()


class Identities:
    """Who calls what: admin operations as the admin, the rest as a normal user;
    POST /api/logout spends throwaway sessions (it revokes the one it is given)."""

    def __init__(self, app: Appliance):
        admin = app.admin()
        self.admin = admin.token
        r = admin.post("/admin/users", json={"username": "fuzzer", "password": "fuzz-pass-1"})
        assert r.status_code == 200, r.text
        user = app.login("fuzzer", "fuzz-pass-1")
        self.user = user.token
        self.spare = [app.login("fuzzer", "fuzz-pass-1").token for _ in range(LOGOUT_SESSIONS)]
        # Real resources, so that requests also reach past "not found".
        key_id, _ = add_key(user)
        container = user.post("/compute/containers", json={"name": "fz", "ssh_key_ids": [key_id]}).json()
        assert user.post(f"/compute/containers/{container['id']}/ingress", json={"port": 8001}).status_code == 200
        assert user.post("/storage/namespaces", json={"name": "fuzzns", "visibility": 1}).status_code == 200
        assert user.put("/storage/fuzzns/hello.txt", data=b"hello, fuzz\n" * 100).status_code == 200
        token = user.post("/api/tokens", json={"name": "fz", "scopes": {f"storage.{user.user_id}": ["read"]}})
        victim = admin.post("/admin/users", json={"username": "fuzz-victim", "password": "pw-victim-1"})
        # An API token that may only read another namespace's files: most calls are 403.
        narrow = user.post("/api/tokens", json={"name": "narrow",
                                                "scopes": {f"storage.{user.user_id}.files.elsewhere": ["read"]}})
        assert narrow.status_code == 200, narrow.text
        self.narrow = narrow.json()["token"]
        account = user.post("/api/service-accounts",
                            json={"name": "fz", "scopes": {f"storage.{user.user_id}": ["read"]}})
        assert account.status_code == 200, account.text
        # A session of the victim's, for the session lists to end.
        app.login("fuzz-victim", "pw-victim-1")
        [session] = [s["id"] for s in admin.get("/admin/sessions").json() if s["username"] == "fuzz-victim"]
        self.real = {  # path prefix -> values of its path parameters that exist (first match wins)
            "/compute/containers/": {"id": container["id"], "port": 8001},
            "/compute/ssh-keys/": {"id": key_id},
            "/api/tokens/": {"id": token.json()["id"]},
            "/storage/namespaces/": {"name": "fuzzns"},
            "/storage/": {"namespace": "fuzzns", "name": "hello.txt"},
            "/admin/users/": {"user_id": victim.json()["user_id"]},
            "/api/service-accounts/": {"id": account.json()["id"]},
            "/api/settings/sessions/": {"id": session},
            "/admin/sessions/": {"id": session},
            "/api/metrics/nodes/": {"name": socket.gethostname()},   # this host (host_name unset)
            "/admin/hosts/": {"name": socket.gethostname()},         # drained, then undrained
        }

    def headers(self, operation, narrow: bool = False) -> dict:
        path = operation.path
        if narrow and path != "/api/logout":
            return {"Authorization": f"Bearer {self.narrow}"}
        if path.startswith("/admin/"):
            return {"Authorization": f"Bearer {self.admin}"}
        if path == "/api/logout":
            return {"Authorization": f"Bearer {self.spare.pop()}"} if self.spare else {}
        return {"Authorization": f"Bearer {self.user}"}

    def overrides(self, operation) -> dict | None:
        """Fixed parameters naming real resources for *operation*, or None."""
        path = operation.path
        if "{" in path:
            values = next(v for prefix, v in self.real.items() if path.startswith(prefix))
            return {"path_parameters": {k: v for k, v in values.items() if f"{{{k}}}" in path}}
        query = {p.name for p in operation.query} & {"namespace", "name"}
        if path.startswith("/storage/") and query:
            return {"query": {k: v for k, v in self.real["/storage/"].items() if k in query}}
        return None


def _sse(case, headers: dict, app: Appliance):
    """An event stream stays open: check its status and headers, read the
    opening comment, hang up. Errors are plain JSON and validated as usual."""
    kwargs = case.as_transport_kwargs(base_url=app.url, headers=headers)
    kwargs.pop("session", None)
    with requests.request(**kwargs, stream=True, timeout=10) as response:
        if response.status_code == 200:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            first = next(response.iter_content(64))
            assert first.startswith((b":", b"data:")), first
            return None
        response.content  # noqa: B018 (read it all: a JSON error)
        return response


def _run_operation(operation, mode, ids: Identities, app: Appliance, stats: dict, failures: list,
                   deadline: float, overrides: dict | None = None, narrow: bool = False) -> None:
    strategy = operation.as_strategy(generation_mode=mode, **(overrides or {}))
    checks = CHECKS
    if operation.path == "/storage/upload":
        # Multipart form values all travel as text, and the gateway reads the optional
        # form fields only when they precede the file and the query does not set them:
        # "violating" values there are not sent as such or not read.
        checks = [c for c in CHECKS if c is not negative_data_rejection]
    # event streams by their documented media type (/sse/* and /compute/containers/{id}/logs)
    sse = "text/event-stream" in operation.definition.raw["responses"].get("200", {}).get("content", {})

    @hypothesis.settings(max_examples=FUZZ_EXAMPLES // 2 if narrow else FUZZ_EXAMPLES, deadline=None,
                         database=None, derandomize=SEED is None, phases=[Phase.explicit, Phase.generate],
                         suppress_health_check=list(HealthCheck), verbosity=hypothesis.Verbosity.quiet)
    @hypothesis.seed(SEED)
    @hypothesis.given(case=strategy)
    def fuzz(case):
        if time.monotonic() > deadline:
            return
        headers = ids.headers(operation, narrow)
        stats["cases"] += 1
        try:
            response = _sse(case, headers, app) if sse else case.call(base_url=app.url, headers=headers,
                                                                       timeout=20)
            if response is not None:
                stats["statuses"][response.status_code] = stats["statuses"].get(response.status_code, 0) + 1
                per_op = stats.setdefault(operation.label, {})
                per_op[response.status_code] = per_op.get(response.status_code, 0) + 1
                case.validate_response(response, checks=checks, headers=headers)
        except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 (collected, reported below)
            failures.append((operation.label, mode.value, str(e).strip().splitlines()[:40],
                             case.as_curl_command(headers=headers, base_url=app.url)))

    try:
        fuzz()
    except hypothesis.errors.Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE, f"{operation.label}: no valid request can be generated"
        # Nothing to violate (no parameters, no body): the positive run covers it.


def test_fuzz_every_operation_from_the_contract(app):
    started = time.monotonic()
    ids = Identities(app)
    schema = schemathesis.openapi.from_url(app.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    served = requests.get(app.url + "/openapi.json").json()["paths"]
    documented = {f"{verb.upper()} {path}" for path, methods in served.items() for verb in methods}
    # schemathesis leaves out the document it was loaded from; everything else is fuzzed.
    assert {op.label for op in operations} == documented - {"GET /openapi.json"}
    assert len(operations) >= 45
    stats = {"cases": 0, "statuses": {}}
    failures: list = []
    deadline = started + TIME_BUDGET
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run_operation(operation, mode, ids, app, stats, failures, deadline)
    # Then on real resources (valid requests only): first with a narrow API token
    # (scope checks: 403), then as the owner, deletions last.
    ordered = sorted(operations, key=lambda op: (op.method.upper() == "DELETE", -op.path.count("/")))
    for narrow in (True, False):
        for operation in ordered:
            overrides = ids.overrides(operation)
            if overrides:
                stats["real"] = stats.get("real", 0) + (not narrow)
                _run_operation(operation, GenerationMode.POSITIVE, ids, app, stats, failures, deadline,
                               overrides, narrow)
    elapsed = time.monotonic() - started
    print(f"\nfuzz: {stats['cases']} requests over {len(operations)} operations"
          f" ({stats.get('real')} also on real resources) in {elapsed:.1f}s;"
          f" statuses {dict(sorted(stats['statuses'].items()))}")
    if os.environ.get("APPLIANCE_FUZZ_VERBOSE"):
        for op in operations:
            print(f"  {op.label}: {stats.get(op.label)}")
    report = "\n\n".join(f"{label} [{mode}]\n  " + "\n  ".join(lines) + f"\n  reproduce: {curl}"
                         for label, mode, lines, curl in failures[:40])
    assert not failures, f"{len(failures)} failing requests (first 40):\n\n{report}"
    assert stats["cases"] >= MIN_CASES, stats
    assert app.procs["core"].poll() is None and app.procs["http"].poll() is None
