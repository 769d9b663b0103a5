"""Unit tests of the access pieces: SSH user names, ingress rendering,
terminal frames, the service credential."""
import shutil
import subprocess

import pytest

from appliance.config import Config
from appliance.core.compute.sshgw import split_username
from appliance.drivers.base import IngressRoute
from appliance.errors import Invalid
from appliance.host import ingress_nft
from appliance.http.terminal_ws import parse_frame
from appliance.ssh.guest import guest_command

ROUTES = [
    IngressRoute("aaaa1111", "10.217.0.2", 80, 8080),
    IngressRoute("aaaa1111", "10.217.0.2", 443, 8443),
    IngressRoute("bbbb2222", "10.217.0.3", 80, 80),
    IngressRoute("bbbb2222", "10.217.0.3", 8022, 22),
]


def test_ssh_user_names():
    assert split_username("a1b2c3d4") == ("root", "a1b2c3d4")
    assert split_username("dev.a1b2c3d4") == ("dev", "a1b2c3d4")
    for bad in ("", "a.b.", "Root.x1", "x/y", "../a1b2", "dev.A1B2", "-x.a1b2c3d4"):
        with pytest.raises(Invalid):
            split_username(bad)


def test_guest_commands_for_other_users():
    assert guest_command("root", "shell", None) is None
    assert guest_command("root", "subsystem", "sftp") is None
    assert guest_command("root", "exec", "ls -l") == "ls -l"
    assert guest_command("dev", "shell", None) == "exec runuser -l dev"
    assert guest_command("dev", "exec", "echo 'a b'") == "exec runuser -l dev -c 'echo '\"'\"'a b'\"'\"''"
    assert guest_command("dev", "subsystem", "sftp") == "exec runuser -l dev -c /usr/lib/openssh/sftp-server"


def test_nft_script_only_forwards_exclusive_ports():
    script = ingress_nft.nft_script("apbr0", ROUTES)
    assert script.count("dnat to") == 2  # prerouting + output for 8022 only
    assert "th dport 8022 dnat to 10.217.0.3:22" in script
    assert "fib daddr type local" in script
    assert "masquerade" not in script  # 127.0.0.1 is not forwarded: no route_localnet, no SNAT
    assert "flush chain ip appliance ingress_pre_apbr0" in script
    empty = ingress_nft.nft_script("apbr0", [])
    assert "dnat" not in empty and "masquerade" not in empty and "flush chain" in empty


def test_nft_script_never_captures_loopback_or_the_appliances_ports():
    routes = ROUTES + [IngressRoute("cccc3333", "10.217.0.4", 8080, 80)]
    script = ingress_nft.nft_script("apbr0", routes, reserved={8080, 2222, 80, 443})
    lines = script.splitlines()
    assert "10.217.0.4" not in script  # a stored rule on the API port is not rendered
    for chain in ("ingress_pre_apbr0", "ingress_out_apbr0"):
        first_dnat = next(i for i, line in enumerate(lines) if chain in line and "dnat to" in line)
        loopback = lines.index(f"add rule ip appliance {chain} ip daddr 127.0.0.0/8 accept")
        own = lines.index(f"add rule ip appliance {chain} meta l4proto {{ tcp, udp }} "
                          "th dport { 80, 443, 2222, 8080 } accept")
        assert loopback < first_dnat and own < first_dnat


def test_host_ports_in_use(tmp_path):
    from appliance.core.compute import hostports
    from appliance.errors import Conflict
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (tmp_path / "tcp").write_text(header +
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1\n"   # 8080 listen
        # 8001 established
        "   1: 0100007F:1F41 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2\n")
    (tmp_path / "tcp6").write_text(header +
        # 9000
        "   0: 00000000000000000000000000000000:2328 00000000000000000000000000000000:0000 0A 0:0 00:0 0 0 0 3\n")
    (tmp_path / "udp").write_text(header +
        "   0: 00000000:1F45 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4\n"   # 8005 bound
        # 8006 connected
        "   1: 0A000001:1F46 0A000002:0035 01 00000000:00000000 00:00000000 00000000     0        0 5\n")
    assert hostports.bound_ports(tmp_path) == {8080, 9000, 8005}
    config = Config(data_dir="/tmp/x", http_port=8080, ssh_port=2222, core_tcp="0.0.0.0:8500")
    assert {8080, 2222, 80, 443, 8500} <= hostports.reserved(config)
    for port in (8080, 8500, 8005):
        with pytest.raises(Conflict):
            hostports.check_free(config, port, tmp_path)
    hostports.check_free(config, 8001, tmp_path)
    hostports.check_free(config, 8006, tmp_path)


def test_haproxy_config_routes_by_host_and_sni_through_maps(tmp_path):
    from appliance.host import ingress_proxy
    config = Config(data_dir="/tmp/x", compute_domain="Compute.Example", ingress_http_port=18080,
                    ingress_https_port=18443, ingress_max_conns_per_source=7, ingress_hard_stop_after=12,
                    ingress_idle_timeout=90)
    text = ingress_proxy.haproxy_config(config, tmp_path / "h.map", tmp_path / "t.map", tmp_path / "s.sock")
    assert "bind 0.0.0.0:18080" in text and "bind 0.0.0.0:18443" in text
    assert "hard-stop-after 12s" in text and "timeout tunnel 90s" in text and "1h" not in text
    assert text.count("tcp-request connection reject if { sc0_conn_cur gt 7 }") == 2
    assert f"map_str({tmp_path / 'h.map'})" in text and f"req.ssl_sni,lower,map_str({tmp_path / 't.map'})" in text
    assert f"stats socket {tmp_path / 's.sock'} mode 600 level admin" in text
    http = ingress_proxy.map_entries(config, ROUTES, 80)
    tls = ingress_proxy.map_entries(config, ROUTES, 443)
    assert http == [("aaaa1111.compute.example", "10.217.0.2:8080"), ("bbbb2222.compute.example", "10.217.0.3:80")]
    assert tls == [("aaaa1111.compute.example", "10.217.0.2:8443")]
    assert ingress_proxy.map_text(tls) == "aaaa1111.compute.example 10.217.0.2:8443\n"


def test_haproxy_accepts_the_rendered_config(tmp_path):
    from appliance.host import ingress_proxy
    config = Config(data_dir=str(tmp_path), ingress_http_port=18080, ingress_https_port=18443)
    for name in ("h.map", "t.map"):
        (tmp_path / name).write_text(ingress_proxy.map_text(ingress_proxy.map_entries(config, ROUTES, 80)))
    cfg = tmp_path / "h.cfg"
    cfg.write_text(ingress_proxy.haproxy_config(config, tmp_path / "h.map", tmp_path / "t.map", tmp_path / "s"))
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is needed: run scripts/install-deps.sh")
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
    from appliance.core.guard import Authenticator
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
