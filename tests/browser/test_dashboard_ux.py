"""The dashboard as a demanding user finds it, in headless Chromium against the session's
real appliance (no guests, no lock): a phone-width window in the light and the dark
theme (no page scrolls sideways, the theme follows the system), every action's
progress then its outcome in the status line, keyboard only through a confirmation,
files uploaded by the button (several at once, and one of 1 GiB streamed from disk), a
key added from its file, and the copy buttons' clipboard."""
from __future__ import annotations

import hashlib
import itertools
import os
import re
import time
from pathlib import Path

import pytest
from browser_support import (
    assert_accessible,
    console_errors,
    find,
    screenshot,
    sign_in,
    text_of,
    wait,
    wait_text,
)
from compute_support import keypair
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

PASSWORD = "ux-pass-123"
_n = itertools.count()
PHONE = (400, 860)

# The status line's every change, as [class, text] pairs, from now on.
TRAIL = """window.__trail = [];
new MutationObserver(() => { const s = document.getElementById('status');
  window.__trail.push([s.className.replace('status', '').trim(), s.textContent]); })
  .observe(document.getElementById('status'),
           {attributes: true, childList: true, characterData: true, subtree: true});"""


@pytest.fixture(scope="module")
def person(appliance, admin, browser):
    name = f"ux{int(time.time()) % 100000}_{next(_n)}"
    r = admin.post("/admin/users", json={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    client = appliance.login(name, PASSWORD)
    ns = f"{name}-files"
    assert client.post("/storage/namespaces", json={"name": ns, "visibility": 0}).status_code == 200
    long_name = "holiday-picture-with-a-rather-long-file-name-2026-11-30.jpg"
    assert client.put(f"/storage/{ns}/{long_name}", data=b"x" * 123456).status_code == 200
    scopes = {f"storage.{client.user_id}.namespaces": ["read", "create"],
              f"compute.{client.user_id}.containers": ["read"]}
    assert client.post("/api/tokens", json={"name": "ci", "expires_in": "90d", "scopes": scopes}).status_code == 200
    sign_in(browser, appliance.url, name, PASSWORD)
    return {"name": name, "client": client, "ns": ns}


def scheme(b, value: str | None) -> None:
    features = [{"name": "prefers-color-scheme", "value": value}] if value else []
    b.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})


def no_sideways_scroll(b) -> bool:
    return b.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def test_phone_width_light_and_dark(appliance, browser, person):
    """At 400 px every page fits the width (a wide table scrolls in its own box), in
    both themes, each following the system's preference; axe in both."""
    b = browser
    size = b.get_window_size()
    b.set_window_size(*PHONE)
    ns = person["ns"]
    pages = {"containers": "/compute/containers", "create": "/compute/containers/new", "ssh-keys": "/compute/ssh-keys",
             "namespaces": "/storage/namespaces", "files": f"/storage/files?namespace={ns}", "tokens": "/api/tokens",
             "profile": "/settings/profile", "sessions": "/settings/sessions", "activity": "/settings/activity"}
    try:
        started = time.monotonic()
        for name, path in pages.items():
            b.get(appliance.url + path)
            wait(b, lambda d: d.find_elements(By.CSS_SELECTOR, "main table, main .empty, main form"), 10, path)
            backgrounds = {}
            for theme in ("light", "dark"):
                scheme(b, theme)
                backgrounds[theme] = b.execute_script("return getComputedStyle(document.body).backgroundColor")
                assert no_sideways_scroll(b), f"{path} ({theme}) scrolls sideways at {PHONE[0]} px"
                screenshot(b, f"phone-{name}-{theme}")
            assert backgrounds == {"light": "rgb(255, 255, 255)", "dark": "rgb(21, 23, 27)"}, backgrounds
            assert_accessible(b, f"phone {name}")
        # the files table is wider than the phone: it scrolls inside its box, its columns unbroken
        b.get(f"{appliance.url}/storage/files?namespace={ns}")
        box = find(b, "#files .table-wrap")
        assert b.execute_script("return arguments[0].scrollWidth > arguments[0].clientWidth", box)
        assert b.execute_script("return arguments[0].getBoundingClientRect().right <= window.innerWidth", box)
        date = b.find_element(By.CSS_SELECTOR, "#files tbody td:nth-child(3)")
        assert date.size["height"] < 2 * b.find_element(By.CSS_SELECTOR, "#files tbody td:nth-child(2)").size["height"]
        assert find(b, "header nav a[aria-current=page]").text == "Files"   # a namespace's files are under Files
        print(f"{len(pages)} pages at {PHONE[0]} px, two themes and axe each: {time.monotonic() - started:.1f} s")
    finally:
        scheme(b, None)
        b.set_window_size(size["width"], size["height"])


def test_every_action_shows_progress_then_outcome(appliance, browser, person):
    b = browser
    b.get(appliance.url + "/storage/namespaces")
    field = find(b, "#namespace-form input[name=name]")
    b.execute_script(TRAIL)
    new = f"{person['name']}-more"
    field.send_keys(new)
    b.find_element(By.CSS_SELECTOR, "#namespace-form button[type=submit]").click()
    wait_text(b, "#namespaces", new)
    wait(b, lambda d: d.execute_script("return window.__trail.length") >= 2)
    trail = b.execute_script("return window.__trail")
    assert trail[0] == ["busy", "Creating…"] and trail[-1] == ["ok", f"Namespace {new} created."], trail
    # a refusal: progress, then the server's message (never JSON), the button usable again
    b.execute_script(TRAIL)
    field.send_keys(new)
    b.find_element(By.CSS_SELECTOR, "#namespace-form button[type=submit]").click()
    wait(b, lambda d: "error" in d.find_element(By.ID, "status").get_attribute("class"))
    trail = b.execute_script("return window.__trail")
    assert trail[0] == ["busy", "Creating…"] and trail[-1][0] == "error", trail
    assert "exists" in trail[-1][1] and "{" not in trail[-1][1], trail
    assert b.find_element(By.CSS_SELECTOR, "#namespace-form button[type=submit]").is_enabled()
    # a namespace's visibility changed in its row
    b.execute_script(TRAIL)
    visibility = b.find_element(By.CSS_SELECTOR, f"select[aria-label='Visibility of {new}']")
    Select(visibility).select_by_visible_text("public")
    wait_text(b, "#status", f"{new} is now public.")
    assert b.execute_script("return window.__trail")[0] == ["busy", "Saving…"]
    (ns,) = [n for n in person["client"].get("/storage/namespaces").json() if n["name"] == new]
    assert ns["visibility"] == 2


def focus_ring(b) -> str:
    return b.execute_script("const s = getComputedStyle(document.activeElement);"
                            "return s.outlineStyle === 'none' ? '' : s.outlineWidth;")


def press(b, key: str) -> None:
    """A key pressed wherever the focus is, as a person does."""
    ActionChains(b).send_keys(key).perform()


def tab_to(b, label: str, limit: int = 40) -> None:
    for _ in range(limit):
        press(b, Keys.TAB)
        if b.switch_to.active_element.get_attribute("aria-label") == label:
            return
    raise AssertionError(f"Tab never reached {label!r}")


def test_keyboard_only_delete_with_confirmation(appliance, browser, person):
    """From the page's heading, Tab to a row's Delete (its focus ring visible), Enter
    opens the confirmation with Cancel focused, Escape keeps the namespace; Enter,
    Tab, Enter deletes it."""
    b = browser
    client, gone = person["client"], f"{person['name']}-more"
    b.get(appliance.url + "/storage/namespaces")
    wait_text(b, "#namespaces", gone)
    wait(b, lambda d: d.switch_to.active_element.tag_name == "h1")   # the page moves the focus to its heading
    tab_to(b, f"Delete namespace {gone}")
    assert focus_ring(b) == "3px"
    press(b, Keys.ENTER)
    find(b, "dialog[open]")
    assert b.switch_to.active_element.text == "Cancel" and focus_ring(b) == "3px"
    press(b, Keys.ESCAPE)
    wait(b, lambda d: not d.find_elements(By.CSS_SELECTOR, "dialog"))
    assert gone in [n["name"] for n in client.get("/storage/namespaces").json()]
    assert b.switch_to.active_element.get_attribute("aria-label") == f"Delete namespace {gone}"   # focus back
    press(b, Keys.ENTER)
    find(b, "dialog[open]")
    press(b, Keys.TAB)
    assert b.switch_to.active_element.text == "Delete"
    press(b, Keys.ENTER)
    wait_text(b, "#status", f"{gone} deleted.")
    assert gone not in [n["name"] for n in client.get("/storage/namespaces").json()]


def test_upload_several_by_button_and_key_from_file(appliance, browser, person, tmp_path):
    b = browser
    ns, client = person["ns"], person["client"]
    paths = []
    for i, size in enumerate((3 * 1024 * 1024, 10, 2048)):
        p = tmp_path / f"picked-{i}.bin"
        p.write_bytes(bytes([i + 1]) * size)
        paths.append(p)
    b.get(f"{appliance.url}/storage/files?namespace={ns}")
    find(b, "#drop-zone")
    b.find_element(By.ID, "file-input").send_keys("\n".join(str(p) for p in paths))   # the picker, three at once
    wait_text(b, "#status", "3 of 3 uploaded.", 30)
    assert len(b.find_elements(By.CSS_SELECTOR, "#uploads li.done progress")) == 3
    for p in paths:
        assert client.get(f"/storage/{ns}/{p.name}").content == p.read_bytes()
    row = wait_text(b, f"#files tr[data-name='{paths[0].name}']", "3.0 MB")
    assert re.search(r"\b\d{4}-\d\d-\d\d \d\d:\d\d\b", row), row   # the date a person reads, not a timestamp
    # a key from its .pub file: the name comes from the file's
    _, public = keypair()
    pub = tmp_path / "workstation.pub"
    pub.write_text(public + "\n")
    b.get(appliance.url + "/compute/ssh-keys")
    wait_text(b, "#keys", "No SSH keys yet")
    b.find_element(By.CSS_SELECTOR, "#key-form input[type=file]").send_keys(str(pub))
    key_name = b.find_element(By.CSS_SELECTOR, "#key-form input[name=name]")
    wait(b, lambda d: key_name.get_attribute("value") == "workstation")
    b.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    wait_text(b, "#keys", "workstation")
    (key,) = client.get("/compute/ssh-keys").json()["ssh_keys"]
    assert key["name"] == "workstation" and key["fingerprint"] in text_of(b, "#keys")


def browser_rss(b) -> int:
    """Bytes of resident memory of Chromium: every process under chromedriver."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0, list(children.get(b.service.process.pid, []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


def test_a_1_gib_file_uploads_without_the_browser_holding_it(appliance, browser, person, tmp_path):
    """The page hands XMLHttpRequest the picked File, which Chromium reads from disk as it
    sends: its memory grows by a small part of the file, and the stored bytes are the file's."""
    b = browser
    ns, client = person["ns"], person["client"]
    big, digest = tmp_path / "one-gib.bin", hashlib.sha256()
    block = os.urandom(1 << 20)
    with open(big, "wb") as f:
        for i in range(1024):   # 1 GiB, every MiB different
            chunk = i.to_bytes(4, "big") + block[4:]
            f.write(chunk)
            digest.update(chunk)
    try:
        b.get(f"{appliance.url}/storage/files?namespace={ns}")
        find(b, "#drop-zone")
        before = peak = browser_rss(b)
        started = time.monotonic()
        b.find_element(By.ID, "file-input").send_keys(str(big))
        while "1 of 1 uploaded." not in text_of(b, "#status") and time.monotonic() - started < 600:
            peak = max(peak, browser_rss(b))
            time.sleep(0.2)
        took = time.monotonic() - started
        wait_text(b, "#status", "1 of 1 uploaded.", 1)
        grew = peak - before
        print(f"1 GiB uploaded by the button in {took:.1f} s; Chromium's memory {before >> 20} MiB, "
              f"at most {peak >> 20} MiB while sending (+{grew >> 20} MiB)")
        assert grew < 256 << 20, f"Chromium grew by {grew >> 20} MiB sending a 1 GiB file"
        wait_text(b, "#files tr[data-name='one-gib.bin']", "1.0 GB")
        stored, got = hashlib.sha256(), 0
        with client.get(f"/storage/{ns}/one-gib.bin", stream=True) as r:
            assert r.status_code == 200, r.text
            for piece in r.iter_content(1 << 20):
                stored.update(piece)
                got += len(piece)
        assert (got, stored.hexdigest()) == (1 << 30, digest.hexdigest())
    finally:
        big.unlink()
        client.delete(f"/storage/{ns}/one-gib.bin")


def clipboard(b) -> str:
    return b.execute_async_script("const done = arguments[arguments.length - 1];"
                                  "navigator.clipboard.readText().then(done, (e) => done('ERROR ' + e));")


def test_copy_buttons_fill_the_clipboard(appliance, browser, person):
    """Copy link puts the same-origin URL the server serves on the clipboard; the new
    token's Copy puts the token there."""
    b = browser
    b.execute_cdp_cmd("Browser.grantPermissions", {"origin": appliance.url,
                                                   "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    ns = person["ns"]
    b.get(f"{appliance.url}/storage/files?namespace={ns}")
    button = find(b, "button[aria-label='Copy link to picked-1.bin']")
    button.click()
    wait(b, lambda d: button.text == "Copied")
    url = clipboard(b)
    assert url == f"{appliance.url}/storage/{ns}/picked-1.bin", url
    assert person["client"].get(url).content == bytes([2]) * 10
    b.get(appliance.url + "/api/tokens")
    find(b, "#token-form input[name=name]").send_keys("copied")
    b.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    token = find(b, "#token-value").text
    b.find_element(By.CSS_SELECTOR, "#new-token button").click()
    assert clipboard(b) == token
    errors = console_errors(b)
    assert not errors, "\n".join(errors)
