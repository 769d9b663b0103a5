"""The WebAuthn relying party from configuration (core/auth/webauthn_keys.py), and
the scope comparison that ends a narrowed token's streams (core/guard.py)."""
from __future__ import annotations

from appliance.config import Config
from appliance.core.auth.webauthn_keys import RelyingParty
from appliance.core.guard import narrowed


def test_the_rp_id_is_the_public_host_or_localhost_for_an_address():
    assert RelyingParty.from_config(Config(public_host="127.0.0.1", http_port=8080)) == RelyingParty(
        "localhost", ("http://localhost:8080", "https://localhost"))
    assert RelyingParty.from_config(Config(public_host="::1", http_port=8080)).id == "localhost"
    rp = RelyingParty.from_config(Config(public_host="Cloud.Example.org", http_port=443, tls_cert_file="/c.pem"))
    assert rp == RelyingParty("cloud.example.org", ("https://cloud.example.org",))
    assert RelyingParty.from_config(Config(public_host="cloud.example.org", http_port=80)).origins == (
        "http://cloud.example.org", "https://cloud.example.org")


def test_configured_rp_id_and_origins_win():
    rp = RelyingParty.from_config(Config(public_host="10.0.0.5", webauthn_rp_id="example.org",
                                         webauthn_origins="https://dash.example.org/, https://example.org:8443"))
    assert rp == RelyingParty("example.org", ("https://dash.example.org", "https://example.org:8443"))


def test_narrowed_means_an_action_of_before_is_gone():
    before = {"compute.u1": ["read"], "storage.u1": ["create", "read"]}
    assert not narrowed(before, before)
    assert not narrowed(before, {**before, "compute.u1": ["read", "update"], "storage.u1.ns": ["read"]})
    assert narrowed(before, {"compute.u1": ["read"], "storage.u1": ["read"]})
    assert narrowed(before, {"storage.u1": ["create", "read"]})
    assert narrowed(before, {})
