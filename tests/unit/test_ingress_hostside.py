"""Ingress host-side hardening without root: what the NAT rule says, which
ports a pass leaves out, which conntrack entries a pass forgets."""
from appliance.config import Config
from appliance.core.compute import hostports, ingress
from appliance.core.compute.ingress import Ingress, Route
from appliance.drivers.fake import FakeIngress
from appliance.drivers.lxc.ingress import LxcIngress
from appliance.host import conntrack, network


def test_masquerade_never_keeps_a_guest_tcp_udp_source_port(monkeypatch):
    scripts = []
    monkeypatch.setattr(network, "_nft", scripts.append)
    network.ensure_nat("br-x", "10.9.0.0/24")
    rules = [line for line in scripts[0].splitlines() if "masquerade" in line and "ip saddr 10.9.0.0/24" in line]
    assert rules[0].endswith("meta l4proto { tcp, udp } masquerade to :32768-60999")
    assert rules[1].endswith("masquerade") and len(rules) == 2  # other protocols (ICMP) after it


def test_a_port_a_host_service_bound_after_the_rule_is_left_out(monkeypatch):
    monkeypatch.setattr(hostports, "bound_ports", lambda *a: {8123, 22})
    routes = [Route("a", "10.9.0.2", 8123, 80), Route("b", "10.9.0.3", 8124, 80), Route("c", "10.9.0.4", 80, 80)]
    kept, busy = ingress._without_host_services(routes)
    assert busy == {8123}
    assert [r.port for r in kept] == [8124, 80]


def test_a_port_that_becomes_live_forgets_entries_replying_to_it(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(conntrack, "forget_reply_port", lambda port: calls.append(("reply", port)))
    monkeypatch.setattr(conntrack, "forget_forward", lambda port, ip: calls.append(("forward", port, ip)))
    monkeypatch.setattr(conntrack, "forget_address", lambda ip: calls.append(("address", ip)))
    monkeypatch.setattr(conntrack, "forget_stale", lambda *a: 0)
    ing = LxcIngress(Config(data_dir=str(tmp_path)))
    a, b = Route("a", "10.9.0.2", 8100, 80), Route("b", "10.9.0.3", 8101, 80)
    ing._forget([a, Route("c", "10.9.0.4", 443, 443)], {"10.9.0.2", "10.9.0.4"})
    assert calls == [("reply", 8100)]  # first pass: every exclusive port; never 80/443
    calls.clear()
    ing._forget([a, b], {"10.9.0.2", "10.9.0.3"})
    assert calls == [("reply", 8101), ("address", "10.9.0.4")]
    calls.clear()
    ing._forget([b], {"10.9.0.2", "10.9.0.3"})  # a left out (host service): its NAT bindings go
    assert calls == [("forward", 8100, "10.9.0.2")]


def test_recheck_starts_a_pass_only_when_a_forwarded_ports_binding_changed(monkeypatch, tmp_path):
    bound = {8123}
    monkeypatch.setattr(hostports, "bound_ports", lambda *a: set(bound))
    monkeypatch.setattr(ingress, "live_routes", lambda: [Route("a", "10.9.0.2", 8123, 80),
                                                         Route("b", "10.9.0.3", 80, 80)])
    ing = Ingress(Config(data_dir=str(tmp_path)), run_blocking=None, applier=FakeIngress())
    passes = []
    monkeypatch.setattr(ing, "changed", lambda: passes.append(1))
    ing.recheck()
    assert passes == []  # before the first pass there is nothing to compare
    ing._busy = {8123}
    ing.recheck()
    assert passes == []  # unchanged
    bound.clear()  # the host service went away: the rule may come back
    ing.recheck()
    assert passes == [1]
