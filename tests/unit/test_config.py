import os
import stat

import pytest

from appliance import config


def test_env_overrides_file(tmp_path):
    f = tmp_path / "a.toml"
    f.write_text('http_port = 9000\ndata_dir = "/srv/x"\n')
    cfg = config.load(f, env={"APPLIANCE_HTTP_PORT": "9001"})
    assert cfg.http_port == 9001 and cfg.data_dir == "/srv/x"
    assert cfg.core_socket_path == "/srv/x/core.sock"
    assert cfg.database_url == "sqlite:////srv/x/appliance.db"


def test_unknown_setting_is_an_error(tmp_path):
    f = tmp_path / "a.toml"
    f.write_text("htp_port = 1\n")
    with pytest.raises(ValueError, match="htp_port"):
        config.load(f, env={})


def test_bad_integer_names_the_setting():
    with pytest.raises(ValueError, match="http_port"):
        config.load("/dev/null", env={"APPLIANCE_HTTP_PORT": "eighty"})


def test_secret_is_generated_once_and_private(tmp_path):
    cfg = config.load("/dev/null", env={"APPLIANCE_DATA_DIR": str(tmp_path)})
    first = cfg.secret()
    assert first == cfg.secret() and len(first) >= 32
    assert stat.S_IMODE(os.stat(tmp_path / "jwt_secret").st_mode) == 0o600


def test_ssh_host_is_read_as_public_host_with_a_warning(tmp_path, caplog):
    f = tmp_path / "old.toml"
    f.write_text('ssh_host = "cloud.example"\nssh_listen = "0.0.0.0"\n')
    cfg = config.load(f, env={})
    assert cfg.public_host == "cloud.example" and cfg.ssh_listen == "0.0.0.0"
    assert not hasattr(cfg, "ssh_host")
    assert "ssh_host is deprecated: read as public_host" in caplog.text
    caplog.clear()
    cfg = config.load("/dev/null", env={"APPLIANCE_SSH_HOST": "env.example"})
    assert cfg.public_host == "env.example"
    assert "APPLIANCE_SSH_HOST is deprecated: read as APPLIANCE_PUBLIC_HOST" in caplog.text


def test_public_host_wins_over_the_old_ssh_host(tmp_path, caplog):
    f = tmp_path / "both.toml"
    f.write_text('public_host = "cloud.example"\nssh_host = "0.0.0.0"\n')
    assert config.load(f, env={}).public_host == "cloud.example"
    assert "ssh_host is deprecated and ignored: public_host is set" in caplog.text
    # The environment still overrides the file, under the old name too.
    assert config.load(f, env={"APPLIANCE_SSH_HOST": "env.example"}).public_host == "env.example"


@pytest.mark.parametrize("collection", ["", "../x", "a/b", "a b", "-lead", ".hidden", "x" * 65])
def test_a_seaweedfs_collection_that_cannot_name_a_folder_is_refused(collection):
    with pytest.raises(ValueError, match="seaweedfs_collection"):
        config.load("/dev/null", env={"APPLIANCE_SEAWEEDFS_COLLECTION": collection})


def test_each_collection_has_its_own_blob_folder():
    from appliance.filer import BLOB_ROOT, blob_root
    assert blob_root("appliance") == BLOB_ROOT == "/appliance/blobs"
    assert blob_root("second") == "/appliance-second/blobs" and blob_root("buckets") == "/appliance-buckets/blobs"
    assert config.load("/dev/null", env={"APPLIANCE_SEAWEEDFS_COLLECTION": "tenant_2-b.x"}).seaweedfs_collection


def test_the_upload_backstop_margin_is_a_setting_of_at_least_zero():
    assert config.load("/dev/null", env={}).upload_backstop_margin_seconds == 10   # the core's backstop as before
    env = {"APPLIANCE_UPLOAD_BACKSTOP_MARGIN_SECONDS": "0"}
    assert config.load("/dev/null", env=env).upload_backstop_margin_seconds == 0
    for bad in ("-1", "ten"):
        with pytest.raises(ValueError, match="upload_backstop_margin_seconds"):
            config.load("/dev/null", env={"APPLIANCE_UPLOAD_BACKSTOP_MARGIN_SECONDS": bad})
