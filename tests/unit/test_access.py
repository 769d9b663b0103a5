"""Unit tests of the access pieces: SSH user names, ingress rendering,
terminal frames, the service credential."""
import shutil
import subprocess

import pytest

from appliance.config import Config
from appliance.core import ingress
from appliance.core.sshgw import split_username
from appliance.errors import Invalid
from appliance.http.terminal import parse_frame
from appliance.ssh.server import _guest_command

ROUTES = [
    ingress.Route("aaaa1111", "10.217.0.2", 80, 8080),
    ingress.Route("aaaa1111", "10.217.0.2", 443, 8443),
    ingress.Route("bbbb2222", "10.217.0.3", 80, 80),
    ingress.Route("bbbb2222", "10.217.0.3", 8022, 22),
]


def test_ssh_user_names():
    assert split_username("a1b2c3d4") == ("root", "a1b2c3d4")
    assert split_username("dev.a1b2c3d4") == ("dev", "a1b2c3d4")
    for bad in ("", "a.b.", "Root.x1", "x/y", "../a1b2", "dev.A1B2", "-x.a1b2c3d4"):
        with pytest.raises(Invalid):
            split_username(bad)


def test_guest_commands_for_other_users():
    assert _guest_command("root", "shell", None) is None
    assert _guest_command("root", "subsystem", "sftp") is None
    assert _guest_command("root", "exec", "ls -l") == "ls -l"
    assert _guest_command("dev", "shell", None) == "exec runuser -l dev"
    assert _guest_command("dev", "exec", "echo 'a b'") == "exec runuser -l dev -c 'echo '\"'\"'a b'\"'\"''"
    assert _guest_command("dev", "subsystem", "sftp") == "exec runuser -l dev -c /usr/lib/openssh/sftp-server"


def test_nft_script_only_forwards_exclusive_ports():
    script = ingress.nft_script("apbr0", ROUTES)
    assert script.count("dnat to") == 2  # prerouting + output for 8022 only
    assert "th dport 8022 dnat to 10.217.0.3:22" in script
    assert "fib daddr type local" in script
    assert 'oifname "apbr0" masquerade' in script
    assert "flush chain ip appliance ingress_pre_apbr0" in script
    empty = ingress.nft_script("apbr0", [])
    assert "dnat" not in empty and "masquerade" not in empty and "flush chain" in empty


def test_haproxy_config_routes_by_host_and_sni():
    config = Config(data_dir="/tmp/x", compute_domain="Compute.Example", ingress_http_port=18080,
                    ingress_https_port=18443)
    text = ingress.haproxy_config(config, ROUTES)
    assert "bind 0.0.0.0:18080" in text and "bind 0.0.0.0:18443" in text
    assert "use_backend h_aaaa1111 if { var(txn.host) -m str aaaa1111.compute.example }" in text
    assert "use_backend t_aaaa1111 if { req.ssl_sni -i aaaa1111.compute.example }" in text
    assert "server guest 10.217.0.2:8443" in text and "server guest 10.217.0.3:80" in text
    assert "t_bbbb2222" not in text  # no 443 rule for b
    assert "10.217.0.3:22" not in text  # 8xxx is the kernel's


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
def test_haproxy_accepts_the_rendered_config(tmp_path):
    config = Config(data_dir=str(tmp_path), ingress_http_port=18080, ingress_https_port=18443)
    cfg = tmp_path / "h.cfg"
    cfg.write_text(ingress.haproxy_config(config, ROUTES))
    r = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_terminal_frames():
    assert parse_frame(b"\x03").data == b"\x03"
    assert parse_frame("ls\r").data == b"ls\r"
    r = parse_frame('{"type":"resize","cols":120,"rows":40}')
    assert (r.cols, r.rows, r.data) == (120, 40, b"")
    assert parse_frame('{"type":"input","data":"é"}').data == "é".encode()
    assert parse_frame('{"type":"resize","cols":0,"rows":40}') is None
    assert parse_frame('{"type":"resize","cols":"80","rows":40}') is None
    assert parse_frame("{not json").data == b"{not json"          # other text: raw input
    assert parse_frame('{"type":"other"}').data == b'{"type":"other"}'
    assert parse_frame("") is None and parse_frame(b"") is None


def test_service_access_needs_the_service_secret():
    from appliance.contract import METHODS
    from appliance.core.interceptors import Authenticator
    from appliance.errors import PermissionDenied, Unauthenticated

    method = METHODS["/appliance.v1.SshGatewayService/Authorize"]
    auth = Authenticator(tokens=None, service_secret="s3cret")
    assert auth(method, (("authorization", "Bearer s3cret"),)) is None
    with pytest.raises(PermissionDenied):
        auth(method, (("authorization", "Bearer nope"),))
    with pytest.raises(Unauthenticated):
        auth(method, ())
    with pytest.raises(PermissionDenied):  # a core without a secret refuses everyone
        Authenticator(tokens=None)(method, (("authorization", "Bearer x"),))


def test_internal_service_has_no_http_route():
    from appliance.http.routes import build_routes
    assert not [r for r in build_routes() if "SshGateway" in r.method.path]
