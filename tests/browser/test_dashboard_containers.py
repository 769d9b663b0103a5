"""The container pages' own actions in headless Chromium on an appliance with fake guests
(no lock; real guests, the terminal's shell and `stty`: test_dashboard_guests.py): start,
stop and delete from the list, each change seen live (no reload); saving mount paths asks
first and restarts; the terminal follows the system's theme and the window's size."""
from __future__ import annotations

import pytest
from browser_support import console_errors, find, screenshot, sign_in, wait, wait_text
from compute_support import keypair, new_user
from harness import Appliance
from selenium.webdriver.common.by import By


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("dash-fake"), guest_driver="fake", max_containers_per_user=3)
    a.start()
    yield a
    a.close()


@pytest.fixture(scope="module")
def person(app, browser):
    client = new_user(app, app.admin(), password="pw-fake-1")
    key = client.post("/compute/ssh-keys", json={"name": "k", "public_key": keypair()[1]}).json()
    client.key_id = key["id"]
    sign_in(browser, app.url, client.info["username"], "pw-fake-1")
    return client


def create(person, name: str) -> str:
    r = person.post("/compute/containers", json={"name": name, "instance_type": "nano", "ssh_key_ids": [person.key_id]})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def status_of(b, cid: str) -> str:
    found = b.find_elements(By.CSS_SELECTOR, f"tr[data-id='{cid}'] [data-status]")
    return found[0].get_attribute("data-status") if found else "absent"


def test_list_start_stop_delete_live(app, browser, person):
    b = browser
    b.get(app.url + "/compute/containers")
    wait_text(b, "#quota", "0 of 3 containers")
    b.execute_script("window.__sameDocument = true")
    one, two = create(person, "one"), create(person, "two")
    for cid in (one, two):   # made elsewhere (the API), seen here as they start
        wait(b, lambda d, c=cid: status_of(d, c) == "running", 15, lambda: status_of(b, one) + status_of(b, two))
    wait_text(b, "#quota", "2 of 3 containers")
    row = lambda: b.find_element(By.CSS_SELECTOR, f"tr[data-id='{one}']")  # noqa: E731 - redrawn on each change
    row().find_element(By.XPATH, ".//button[text()='Stop']").click()
    wait_text(b, "#status", "one is stopping.")
    wait(b, lambda d: status_of(d, one) == "stopped", 15)
    assert person.get(f"/compute/containers/{one}").json()["status"] == "stopped"
    row().find_element(By.XPATH, ".//button[text()='Start']").click()
    wait_text(b, "#status", "one is starting.")
    wait(b, lambda d: status_of(d, one) == "running", 15)
    row().find_element(By.CSS_SELECTOR, "button[aria-label='Delete one']").click()
    assert "Delete container one?" in find(b, "dialog[open]").text
    b.find_element(By.CSS_SELECTOR, "dialog[open] button.danger").click()
    wait(b, lambda d: status_of(d, one) == "absent", 15)
    wait_text(b, "#quota", "1 of 3 containers")
    assert [c["id"] for c in person.get("/compute/containers").json()["containers"]] == [two]
    assert b.execute_script("return window.__sameDocument") is True


def test_mount_paths_ask_then_restart(app, browser, person):
    b = browser
    (c,) = person.get("/compute/containers").json()["containers"]
    b.get(f"{app.url}/compute/containers/{c['id']}")
    wait(b, lambda d: d.find_element(By.CSS_SELECTOR, "#container-status [data-status]").get_attribute("data-status")
         == "running", 15)
    paths = find(b, "#mount-paths")
    before = person.get(f"/compute/containers/{c['id']}/mounts").json()["mount_paths"]
    paths.clear()
    paths.send_keys("/root\n/srv/www")
    b.find_element(By.XPATH, "//button[text()='Save mount paths']").click()
    assert "restarts the running container" in find(b, "dialog[open]").text
    b.find_element(By.CSS_SELECTOR, "dialog[open] button.secondary").click()   # Cancel: nothing saved
    wait(b, lambda d: not d.find_elements(By.CSS_SELECTOR, "dialog"))
    assert person.get(f"/compute/containers/{c['id']}/mounts").json()["mount_paths"] == before
    b.find_element(By.XPATH, "//button[text()='Save mount paths']").click()
    find(b, "dialog[open] button.danger").click()
    wait_text(b, "#status", "Mount paths saved; the container is restarting.")
    assert person.get(f"/compute/containers/{c['id']}/mounts").json()["mount_paths"] == ["/root", "/srv/www"]


def test_terminal_follows_theme_and_window(app, browser, person):
    """The terminal (a fake guest's echo here; the real shell: test_dashboard_guests.py) takes the
    system's theme as it changes, and a phone-width window sends a resize message of the new size."""
    b = browser
    cid = create(person, "term")
    b.get(f"{app.url}/compute/containers/{cid}/terminal")
    wait_text(b, "#terminal-state", "connected", 20)
    b.execute_script("window.__sent = []; const send = WebSocket.prototype.send;"
                     "WebSocket.prototype.send = function (x) { if (typeof x === 'string') __sent.push(JSON.parse(x));"
                     " return send.call(this, x); };")
    theme = ("return [window.__terminal.options.theme.background,"
             " getComputedStyle(document.querySelector('#terminal')).backgroundColor]")
    size = b.get_window_size()
    try:
        for scheme, colours in (("dark", ["#111418", "rgb(17, 20, 24)"]), ("light", ["#fbfbfb", "rgb(251, 251, 251)"])):
            b.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme",
                                                                           "value": scheme}]})
            wait(b, lambda d, want=colours: d.execute_script(theme) == want, 5, lambda: str(b.execute_script(theme)))
            screenshot(b, f"terminal-{scheme}")
        b.set_window_size(400, 860)
        wait(b, lambda d: d.execute_script("return __sent.length"), 5, "no resize message")
        cols, rows = b.execute_script("return [window.__terminal.cols, window.__terminal.rows]")
        assert b.execute_script("return __sent")[-1] == {"type": "resize", "cols": cols, "rows": rows}
        assert cols < 50 and b.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        screenshot(b, "terminal-phone")
    finally:
        b.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        b.set_window_size(size["width"], size["height"])
    assert person.delete(f"/compute/containers/{cid}").status_code == 200
    errors = console_errors(b)
    assert not errors, "\n".join(errors)
