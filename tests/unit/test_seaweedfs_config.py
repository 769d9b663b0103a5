"""The pure parts of the SeaweedFS set: keys, tokens, security.toml, command lines,
the embedded set's ports and settings (no weed process runs here)."""
import json
import stat
import tomllib

import jwt
import pytest

from appliance.config import load
from appliance.host import seaweedfs_embedded
from appliance.host.seaweedfs import WeedSet, ensure_jwt_key, filer_jwt, security_toml
from appliance.host.seaweedfs_health import http_address


def test_jwt_key_is_generated_once_and_private(tmp_path):
    path = tmp_path / "sub" / "key"
    key = ensure_jwt_key(path)
    assert len(key) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_jwt_key(path) == key


def test_filer_token_carries_expiry_and_scopes():
    token = filer_jwt("k" * 64, 30, prefixes=["/appliance/blobs/ab/"], methods=["GET"])
    claims = jwt.decode(token, "k" * 64, algorithms=["HS256"])
    assert claims["allowed_prefixes"] == ["/appliance/blobs/ab/"] and claims["allowed_methods"] == ["GET"]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "o" * 64, algorithms=["HS256"])


def test_security_toml_signs_filer_reads_and_writes_and_derives_volume_keys():
    conf = tomllib.loads(security_toml("f" * 64))
    assert conf["jwt"]["filer_signing"]["key"] == "f" * 64
    assert conf["jwt"]["filer_signing"]["read"]["key"] == "f" * 64
    volume = conf["jwt"]["signing"]["key"], conf["jwt"]["signing"]["read"]["key"]
    assert len(set(volume) | {"f" * 64}) == 3   # distinct from each other and from the filer's
    again = tomllib.loads(security_toml("f" * 64))["jwt"]["signing"]["key"]
    assert again == volume[0]   # every host derives the same from the shared key


def test_command_lines_bind_explicitly_and_name_the_master_with_its_grpc_port(tmp_path):
    weed = WeedSet(tmp_path, tmp_path / "key", racks=["h1", "h2"], replication="010", ip="10.0.0.5",
                   ports={"master": (9333, 19444), "volume-h1": (8080, 18081), "volume-h2": (8082, 18083),
                          "filer": (8888, 18888)})
    assert weed.master_grpc_address == "10.0.0.5:9333.19444"
    for proc in weed.processes:
        argv = proc.argv()
        assert "-ip=10.0.0.5" in argv and "-ip.bind=10.0.0.5" in argv, argv
        assert f"-port={proc.port}" in argv and f"-port.grpc={proc.grpc_port}" in argv
        assert f"-config_dir={tmp_path / 'conf'}" in argv
        assert proc.env["GOMEMLIMIT"] == "256MiB"
    assert len({p for proc in weed.processes for p in (proc.port, proc.grpc_port)}) == 8
    assert "-telemetry=false" in weed.master.argv() and "-defaultReplication=010" in weed.master.argv()
    assert [v.name for v in weed.volumes] == ["volume-h1", "volume-h2"]
    assert "-rack=h2" in weed.volumes[1].argv() and "-master=10.0.0.5:9333.19444" in weed.volumes[1].argv()
    assert "-preStopSeconds=1" in weed.volumes[0].argv()
    assert any(a.startswith("-localSocket=") for a in weed.filer.argv())   # never weed's /tmp default


def test_http_address_of_weeds_grpc_form():
    assert http_address("127.0.0.1:9333.19333") == "127.0.0.1:9333"
    assert http_address(" host-a:9333 ") == "host-a:9333"


def _cfg(tmp_path, **settings):
    env = {"APPLIANCE_DATA_DIR": str(tmp_path), "APPLIANCE_STORAGE_BACKEND": "seaweedfs",
           **{f"APPLIANCE_{k.upper()}": v for k, v in settings.items()}}
    return load("/dev/null", env=env)


def test_embedded_ports_are_kept_and_configured_addresses_win(tmp_path):
    cfg = _cfg(tmp_path)
    assert seaweedfs_embedded.wanted(cfg) and seaweedfs_embedded.processes(cfg) == []
    first = seaweedfs_embedded.settings(cfg)
    assert seaweedfs_embedded.settings(cfg) == first   # ports.json: the same next time
    recorded = json.loads((tmp_path / "seaweedfs" / "ports.json").read_text())
    assert first["seaweedfs_filer"] == f"http://127.0.0.1:{recorded['filer'][0]}"
    assert first["seaweedfs_jwt_key_file"] == str(tmp_path / "seaweedfs_jwt_key")
    assert first["seaweedfs_replication"] == "000"
    pinned = _cfg(tmp_path, seaweedfs_filer="http://127.0.0.1:18888", seaweedfs_jwt_key_file="/etc/k")
    assert seaweedfs_embedded.embedded_set(pinned).filer.port == 18888
    assert seaweedfs_embedded.settings(pinned)["seaweedfs_jwt_key_file"] == "/etc/k"
    assert not seaweedfs_embedded.wanted(_cfg(tmp_path, seaweedfs_embedded="false", seaweedfs_filer="http://f:1"))


def test_embedded_refuses_a_replication_one_server_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="010"):
        seaweedfs_embedded.start(_cfg(tmp_path, seaweedfs_replication="010"))
