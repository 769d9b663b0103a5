"""Pieces of the user's client that need no server: scopes, the config file, remote names."""
import stat

from appliance.client import remotes
from appliance.client.tokens import scope_of


def test_scope_of_fills_in_the_user_id_and_actions():
    assert scope_of("compute", "U1") == ("compute.U1", ["read"])
    assert scope_of("compute.containers:read,create", "U1") == ("compute.U1.containers", ["read", "create"])
    assert scope_of("storage.files.my.ns:all", "U1") == ("storage.U1.files.my.ns", ["create", "read", "update",
                                                                                       "delete"])
    assert scope_of("compute.U1.containers.abc:delete", "U1") == ("compute.U1.containers.abc", ["delete"])


def test_config_is_private_and_replaced_whole(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "config.json"
    monkeypatch.setenv("APPLIANCE_CLIENT_CONFIG", str(path))
    store = remotes.Store(current="a", remotes={"a": remotes.Remote(url="https://a", token="t")})
    remotes.save(store)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store.remotes["b"] = remotes.Remote(url="https://b")
    remotes.save(store)
    assert remotes.load() == store
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.json"]   # no temp file left


def test_remote_names():
    assert remotes.name_for("http://127.0.0.1:8080") == "127.0.0.1"
    assert remotes.name_for("https://cloud.example/") == "cloud.example"


def test_exec_output_between_the_markers_however_it_is_split():
    import io

    from appliance.client.terminal import ExecOutput, exec_script
    typed = exec_script(("echo", "a b"))
    assert b"\x1e" not in typed and b"echo 'a b'" in typed     # the echo of the typed line never matches
    shell = typed.replace(b"\r", b"\r\n") + b"\x1estart\r\na b\r\nline2\r\n\x1eexit 3\r\nlogout\r\n"
    for step in (1, 2, 3, 7, len(shell)):
        out = io.BytesIO()
        parser = ExecOutput(out)
        for i in range(0, len(shell), step):
            parser.feed(shell[i:i + step])
        assert (out.getvalue(), parser.status) == (b"a b\nline2\n", 3), step
