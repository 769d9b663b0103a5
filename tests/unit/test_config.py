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
