"""The `appliance` command as an operator uses it."""
import os
import re
import stat
import subprocess
import sys

import requests

from harness import Appliance, free_port


def test_user_add_list_rm(tmp_path):
    app = Appliance(tmp_path / "cli")
    r = app.cli("user", "add", "dora", "--display-name", "Dora D", input="pw-dora\n")
    assert r.returncode == 0, r.stderr
    assert re.match(r"created dora \([A-Za-z0-9]{6}\)", r.stdout)
    assert app.cli("user", "add", "dora", input="x\n").returncode == 1  # taken
    bad = app.cli("user", "add", "bad name", input="x\n")
    assert bad.returncode == 1 and "username" in bad.stderr
    listed = app.cli("user", "list").stdout
    assert "\tdora\tDora D\t" in listed
    app.start()
    try:
        assert app.login("dora", "pw-dora").get("/api/session").json()["display_name"] == "Dora D"
        assert app.cli("user", "rm", "dora").returncode == 0
        r = requests.post(app.url + "/api/login", json={"username": "dora", "password": "pw-dora"})
        assert r.status_code == 401
        assert app.cli("user", "rm", "dora").returncode == 1
    finally:
        app.close()


def test_up_prints_credentials_and_down_stops(tmp_path):
    port = free_port()
    # The fake driver: `up`/`down` of the real host (libvirtd, guests) is shared
    # with other appliances in this run (the real-guest tests prepare it through the core).
    env = {**os.environ, "APPLIANCE_CONFIG": "/dev/null", "APPLIANCE_DATA_DIR": str(tmp_path / "up"),
           "APPLIANCE_HTTP_PORT": str(port), "APPLIANCE_ADMIN_PASSWORD": "", "APPLIANCE_GUEST_DRIVER": "fake",
           "APPLIANCE_SSH_PORT": str(free_port())}
    env.pop("APPLIANCE_ADMIN_PASSWORD")
    run = lambda *a: subprocess.run([sys.executable, "-m", "appliance.cli", *a], env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=900)
    up = run("up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"http://127.0.0.1:{port}" in up.stdout
        password = re.search(r"admin:\s+admin / (\S+)", up.stdout).group(1)
        stored = tmp_path / "up" / "admin_password"
        assert stored.read_text().strip() == password
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        r = requests.post(f"http://127.0.0.1:{port}/api/login", json={"username": "admin", "password": password})
        assert r.status_code == 200 and r.json()["is_admin"] is True
        # A second `up` is a no-op that prints the same credentials.
        again = run("up")
        assert again.returncode == 0 and password in again.stdout
        assert "core: running" in run("status").stdout
    finally:
        down = run("down")
    assert down.returncode == 0 and "core" in down.stdout
    assert "core: stopped" in run("status").stdout
    try:
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
        raise AssertionError("gateway still answers after down")
    except requests.ConnectionError:
        pass
