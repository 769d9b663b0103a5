"""The dashboard with a real LXC guest, in a real browser: add a key, create a
container and watch it become running without a reload, its detail page (SSH
command, SSH toggle, ingress, mounts), the terminal (typing, output read back
from the page, resize followed by the guest's `stty size`), stop and delete.
Starts guests: run under `flock /tmp/appliance-lxc.lock` (its own bridge and subnet)."""
from __future__ import annotations

import os
import re
import time

import pytest
from access_support import start_appliance, stop_appliance
from browser_support import assert_accessible, console_errors, find, screenshot, sign_in, text_of, wait, wait_text
from compute_support import keypair, new_user
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("libvirt LXC guests need root", allow_module_level=True)

BRIDGE, SUBNET = "apdash0", "10.242.0.0/24"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = start_appliance(tmp_path_factory.mktemp("dash-guests"), BRIDGE, SUBNET, max_containers_per_user=2)
    yield a
    stop_appliance(a, BRIDGE)


@pytest.fixture(scope="module")
def person(app):
    client = new_user(app, app.admin(), password="pw-dash-1")
    client.username = client.info["username"]
    return client


@pytest.fixture(scope="module")
def signed_in(app, person, browser):
    sign_in(browser, app.url, person.username, "pw-dash-1")
    return browser


def test_add_ssh_key(app, person, signed_in):
    b = signed_in
    b.get(app.url + "/compute/ssh-keys")
    wait_text(b, "#keys", "No SSH keys yet")
    _, public = keypair()
    find(b, "#key-form input[name=name]").send_keys("laptop")
    b.find_element(By.CSS_SELECTOR, "#key-form textarea").send_keys(public)
    b.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    wait_text(b, "#keys", "laptop")
    (key,) = person.get("/compute/ssh-keys").json()["ssh_keys"]
    assert key["fingerprint"] in text_of(b, "#keys")
    assert "added" in text_of(b, "#status")
    assert_accessible(b, "ssh-keys")
    screenshot(b, "ssh-keys")


def test_create_and_see_it_run_without_reload(app, person, signed_in):
    b = signed_in
    b.get(app.url + "/compute/containers")
    wait_text(b, "#quota", "0 of 2 containers")
    find(b, "#new-container").click()
    wait_text(b, "#create-form #quota", "You have 0 of 2 containers.")
    find(b, "#create-form input[name=name]").send_keys("web")
    type_select = b.find_element(By.CSS_SELECTOR, "#create-form select[name=instance_type]")
    assert "nano — 0.5 CPU, 512 MB memory" in type_select.text   # CPU and memory shown
    assert b.find_element(By.CSS_SELECTOR, "#create-form input[name=key]").is_selected()
    b.find_element(By.CSS_SELECTOR, "#create-form textarea[name=mount_paths]").send_keys("/root\n/srv/data")
    b.find_element(By.CSS_SELECTOR, "#create-form textarea[name=ingress]").send_keys("8642:80")
    assert_accessible(b, "create")
    screenshot(b, "create", docs=True)
    b.execute_script("window.__sameDocument = true")
    b.find_element(By.CSS_SELECTOR, "#create-form button[type=submit]").click()
    find(b, "#container-status")
    started = time.monotonic()
    wait(b, lambda d: d.find_element(By.CSS_SELECTOR, "#container-status [data-status]").get_attribute("data-status")
         == "running", 60, "never running")
    print(f"running in the page {time.monotonic() - started:.1f} s after the detail page opened")
    assert b.execute_script("return window.__sameDocument") is True   # no reload happened
    (c,) = person.get("/compute/containers").json()["containers"]
    assert c["status"] == "running" and c["name"] == "web"
    assert text_of(b, "#ssh-command") == c["ssh_command"]
    assert text_of(b, "#hostname") == c["hostname"]
    wait_text(b, "#ingress", "8642")
    assert b.find_element(By.ID, "mount-paths").get_attribute("value") == "/root\n/srv/data"
    assert "restarts a running container" in text_of(b, "#mounts")
    assert_accessible(b, "container")
    screenshot(b, "container", docs=True)
    # the list: live badge and the quota
    b.find_element(By.CSS_SELECTOR, "nav a[href='/compute/containers']").click()
    wait_text(b, "#quota", "1 of 2 containers")
    assert text_of(b, f"tr[data-id='{c['id']}'] [data-status]") == "running"   # (a status event redraws the row)
    assert b.execute_script("return window.__sameDocument") is True
    assert_accessible(b, "containers")
    screenshot(b, "containers", docs=True)


def container(person) -> dict:
    (c,) = person.get("/compute/containers").json()["containers"]
    return c


def test_detail_ssh_toggle_and_ingress(app, person, signed_in):
    b = signed_in
    c = container(person)
    b.get(f"{app.url}/compute/containers/{c['id']}")
    toggle = find(b, "#ssh-toggle")
    assert toggle.is_selected()
    toggle.click()
    wait_text(b, "#status", "SSH access off")
    assert person.get(f"/compute/containers/{c['id']}/ssh").json() == {"ssh_enabled": False}
    wait_text(b, "#ingress", "8642")
    b.find_element(By.CSS_SELECTOR, "#ingress button[aria-label='Remove port 8642']").click()
    wait_text(b, "#status", "Port 8642 removed")
    b.find_element(By.CSS_SELECTOR, "#ingress input[name=port]").send_keys("8643")
    b.find_element(By.CSS_SELECTOR, "#ingress button[type=submit]").click()
    wait_text(b, "#status", "Port 8643 forwarded")
    rules = person.get(f"/compute/containers/{c['id']}/ingress").json()["rules"]
    assert [(r["port"], r["target_port"]) for r in rules] == [(8643, 8643)]
    # a server error is shown as its message
    b.find_element(By.CSS_SELECTOR, "#ingress input[name=port]").send_keys("22")
    b.find_element(By.CSS_SELECTOR, "#ingress button[type=submit]").click()
    wait(b, lambda d: "error" in d.find_element(By.ID, "status").get_attribute("class"))
    assert "{" not in text_of(b, "#status") and text_of(b, "#status")


# The foreground colour of the first cell of the last row that starts with arguments[0].
COLOUR_OF = """const buf = window.__terminal.buffer.active;
for (let y = buf.length - 1; y >= 0; y--) { const line = buf.getLine(y);
  if (line && line.translateToString(true).startsWith(arguments[0])) {
    const cell = line.getCell(0); return [cell.getFgColor(), Boolean(cell.isFgPalette())]; } }
return null;"""


def terminal_text(b) -> str:
    return b.execute_script("return document.querySelector('#terminal .xterm-rows').innerText")


def type_and_wait(b, command: str, pattern: str) -> re.Match:
    b.find_element(By.CSS_SELECTOR, "#terminal textarea").send_keys(command + Keys.ENTER)
    found: list[re.Match] = []
    wait(b, lambda d: found.append(m) or True if (m := re.search(pattern, terminal_text(d))) else False, 15,
         lambda: f"{pattern!r} never on the terminal: {terminal_text(b)!r}")
    return found[0]


def fits_the_window(b) -> bool:
    """The terminal fills the window below the header: no page scroll bar."""
    return b.execute_script("return document.documentElement.scrollHeight <= window.innerHeight")


def test_terminal_echo_and_resize(app, person, signed_in):
    b = signed_in
    c = container(person)
    b.get(f"{app.url}/compute/containers/{c['id']}")
    find(b, "#open-terminal").click()
    wait_text(b, "#terminal-state", "connected", 20)
    assert not b.find_element(By.ID, "reconnect").is_displayed()   # offered only once disconnected
    type_and_wait(b, "echo dash-$((6*7))", r"\ndash-42")
    # colours: the guest's escape sequence colours the cells (xterm.js's buffer: palette colour 1, red)
    type_and_wait(b, r"printf '\033[31mdash-%s\033[0m\n' red", r"\ndash-red")
    assert b.execute_script(COLOUR_OF, "dash-red") == [1, True]
    rows, cols = b.execute_script("return [window.__terminal.rows, window.__terminal.cols]")
    assert fits_the_window(b)
    m = type_and_wait(b, "clear; stty size", r"(\d+) (\d+)\s")
    assert (int(m.group(1)), int(m.group(2))) == (rows, cols)
    assert_accessible(b, "terminal")
    screenshot(b, "terminal", docs=True)
    size = b.get_window_size()
    b.set_window_size(size["width"] - 300, size["height"] - 200)
    wait(b, lambda d: d.execute_script("return [window.__terminal.rows, window.__terminal.cols]") != [rows, cols])
    new_rows, new_cols = b.execute_script("return [window.__terminal.rows, window.__terminal.cols]")
    assert new_rows < rows and new_cols < cols
    assert fits_the_window(b)
    m = type_and_wait(b, "clear; stty size", rf"{new_rows} {new_cols}\s")
    print(f"terminal {rows}x{cols} -> {new_rows}x{new_cols}; the guest's stty says {m.group(0).strip()}")
    b.set_window_size(size["width"], size["height"])
    # the shell ends: the page says so and offers to reconnect
    b.find_element(By.CSS_SELECTOR, "#terminal textarea").send_keys("exit" + Keys.ENTER)
    wait_text(b, "#terminal-state", "disconnected")
    find(b, "#reconnect").click()
    wait_text(b, "#terminal-state", "connected", 20)
    type_and_wait(b, "echo again-$((2+3))", r"\nagain-5")
    errors = console_errors(b)
    assert not errors, "\n".join(errors)


# What xterm.js holds on screen (its buffer API, through the page's test hook
# window.__terminal): the active buffer ("normal" or "alternate") and its rows.
SCREEN = """const t = window.__terminal, buf = t.buffer.active;
return {type: buf.type, cursor: buf.cursorY, rows: Array.from({length: t.rows},
  (_, i) => (buf.getLine(buf.viewportY + i) || {translateToString: () => ''}).translateToString(true))};"""


def screen(b) -> dict:
    return b.execute_script(SCREEN)


def wait_screen(b, check, what: str, timeout: float = 15) -> dict:
    seen: list[dict] = []
    wait(b, lambda d: check(s := screen(d)) and not seen.append(s), timeout,
         lambda: f"{what} never on the screen: {screen(b)}")
    return seen[0]


def keys(b, *sequence) -> None:
    b.find_element(By.CSS_SELECTOR, "#terminal textarea").send_keys(*sequence)


def at_prompt(s: dict) -> bool:
    """The shell waits for a command: the normal screen, its last written row a bare prompt."""
    written = [r for r in s["rows"] if r.strip()]
    return s["type"] == "normal" and bool(written) and bool(re.search(r"[#$] *$", written[-1]))


def start_program(b, command: str, running, what: str) -> dict:
    """Type COMMAND at a ready prompt, as a person does, and wait until it runs."""
    wait_screen(b, at_prompt, "the shell's prompt")
    keys(b, command + Keys.ENTER)
    return wait_screen(b, running, what)


def test_full_screen_programs(app, person, signed_in):
    """top redraws the whole screen in place; nano and vi run on the alternate
    screen; all read back from xterm.js's buffer, then quit to the shell."""
    b = signed_in
    c = container(person)
    b.get(f"{app.url}/compute/containers/{c['id']}/terminal")
    wait_text(b, "#terminal-state", "connected", 20)
    rows, cols = b.execute_script("return [window.__terminal.rows, window.__terminal.cols]")
    # procps reads /proc/meminfo with lseek + read: libvirt's FUSE file made free fail
    type_and_wait(b, "clear; free -m", r"Mem:\s+\d+")
    started = time.monotonic()
    first = start_program(b, "top -d 0.5", lambda s: s["rows"][0].startswith("top - ") and "load average" in
                          s["rows"][0] and any(r.lstrip().startswith("PID") for r in s["rows"]), "top's summary")
    print(f"top drawn {time.monotonic() - started:.1f} s after Enter")
    lines = first["rows"]
    assert lines[1].startswith("Tasks:") and lines[2].startswith("%Cpu(s):"), lines[:5]
    assert any(r.startswith("MiB Mem") for r in lines[3:5]), lines[:5]
    header = next(i for i, r in enumerate(lines) if r.lstrip().startswith("PID"))
    assert any(re.search(r"\btop\s*$", r) for r in lines[header + 1:]), lines   # itself in the list
    assert first["type"] == "normal" and len(lines) == rows
    # it refreshes in place: the clock in its first line moves, nothing scrolls
    wait_screen(b, lambda s: s["rows"][0][:14] != lines[0][:14] and s["rows"][0].startswith("top - "),
                "top's next refresh", 10)
    screenshot(b, "terminal-top", docs=True)
    keys(b, "q")
    quitting = time.monotonic()
    wait_screen(b, at_prompt, "the shell's prompt after top")
    print(f"top quit {time.monotonic() - quitting:.1f} s after q")
    # the same terminal goes on: typing at the prompt top left behind (`clear` puts the
    # output on the first row)
    type_and_wait(b, "clear; echo after-top-$((3*3))", r"(^|\n)after-top-9\n")
    # nano: the alternate screen, control keys, the shell's screen back after it
    start_program(b, "nano /root/note.txt", lambda s: s["type"] == "alternate" and "GNU nano" in s["rows"][0]
                  and "^X Exit" in " ".join(s["rows"][-2:]), "nano")
    keys(b, "typed in the dashboard")
    wait_screen(b, lambda s: any("typed in the dashboard" in r for r in s["rows"]), "the typed text")
    keys(b, Keys.CONTROL, "o")
    wait_screen(b, lambda s: "File Name to Write" in " ".join(s["rows"][-3:]), "nano's save prompt")
    keys(b, Keys.ENTER)
    wait_screen(b, lambda s: "Wrote 1 line" in " ".join(s["rows"][-3:]), "nano's 'Wrote 1 line'")
    keys(b, Keys.CONTROL, "x")
    wait_screen(b, lambda s: s["type"] == "normal", "the normal screen again")
    type_and_wait(b, "cat /root/note.txt", r"\ntyped in the dashboard")
    # vi (vim-tiny): insert mode, Escape, an ex command; the file is written
    start_program(b, "vi /root/vi.txt", lambda s: s["type"] == "alternate" and 'vi.txt" [New' in s["rows"][-1],
                  "vi")
    keys(b, "i", "written in vi")
    wait_screen(b, lambda s: s["rows"][0].startswith("written in vi"), "the text typed in vi")
    keys(b, Keys.ESCAPE, ":wq", Keys.ENTER)
    wait_screen(b, lambda s: s["type"] == "normal", "the shell's screen after vi")
    type_and_wait(b, "clear; cat /root/vi.txt", r"(^|\n)written in vi\n")
    errors = console_errors(b)
    assert not errors, "\n".join(errors)
    print(f"terminal {rows}x{cols}")


def test_stop_and_delete_with_confirmation(app, person, signed_in):
    b = signed_in
    c = container(person)
    b.get(f"{app.url}/compute/containers/{c['id']}")
    # the guest's log (GET .../logs, SSE): its init's lines, live until it stops
    started = time.monotonic()
    find(b, "#show-log").click()
    wait_text(b, "#container-log", f"appliance-init: starting {c['id']}", 5)
    print(f"container log shown {time.monotonic() - started:.2f} s after the click")
    assert_accessible(b, "container-log")
    screenshot(b, "container-log")
    wait(b, lambda d: d.find_element(By.ID, "stop").is_enabled())
    b.find_element(By.ID, "stop").click()
    wait(b, lambda d: d.find_element(By.CSS_SELECTOR, "#container-status [data-status]").get_attribute("data-status")
         == "stopped", 30)
    wait_text(b, "#container-log-note", "The log ended", 10)
    find(b, "#show-log").click()   # not running: the server's 409, as its message
    wait_text(b, "#container-log-note", "not running", 5)
    b.find_element(By.ID, "delete").click()
    dialog = find(b, "dialog[open]")
    assert "Delete container web?" in dialog.text
    assert_accessible(b, "confirm")
    dialog.find_element(By.CSS_SELECTOR, "button.secondary").click()   # Cancel: nothing happens
    time.sleep(0.3)
    assert person.get(f"/compute/containers/{c['id']}").status_code == 200
    b.find_element(By.ID, "delete").click()
    find(b, "dialog[open] button.danger").click()
    wait_text(b, "h1", "Containers", 20)
    wait_text(b, "#quota", "0 of 2 containers", 20)
    assert person.get("/compute/containers").json()["containers"] == []
