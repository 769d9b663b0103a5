"""The dashboard in a real browser on one appliance with fake guests (no lock):
signing in and out, throttling, files (namespaces, drag-and-drop upload of 50 MB
with its progress bar, download compared byte for byte), API tokens, and the
admin pages (shown to admins only)."""
from __future__ import annotations

import time

import pytest
import requests
from browser_support import (
    assert_accessible,
    attribute_of,
    console_errors,
    find,
    screenshot,
    sign_in,
    sign_out,
    text_of,
    wait,
    wait_text,
)
from harness import Appliance, Client
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("dash"), guest_driver="fake", login_max_failures=2,
                  max_containers_per_user=4,   # the quota shown is the server's, not a default
                  metrics_sample_seconds=1, health_interval_seconds=1)   # the health page moves within seconds
    a.start()
    yield a
    a.close()


def test_sign_in_kept_across_reload_then_out(app, browser):
    browser.get(app.url + "/compute/containers")
    # not signed in: the sign-in page, which comes back to where we were going
    find(browser, "input[name=username]")
    assert "/login?next=%2Fcompute%2Fcontainers" in browser.current_url
    assert_accessible(browser, "sign-in")
    screenshot(browser, "signin", docs=True)
    find(browser, "input[name=username]").send_keys("admin")
    browser.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(app.admin_password)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_text(browser, "h1", "Containers")
    assert browser.current_url == app.url + "/compute/containers"
    assert "admin" in browser.find_element(By.CSS_SELECTOR, ".who").text
    browser.refresh()
    wait_text(browser, "h1", "Containers")
    find(browser, "#sign-out")
    # the admin sees the admin pages
    assert browser.find_elements(By.CSS_SELECTOR, "nav[aria-label=Admin] a[href='/admin/users']")
    sign_out(browser)
    browser.refresh()
    find(browser, "input[name=username]")
    assert "/login" in browser.current_url
    assert not console_errors(browser)


def test_bad_password_then_throttled(app, browser):
    browser.get(app.url + "/login")
    for expected in ("invalid username or password", "invalid username or password", "try again in"):
        user = find(browser, "input[name=username]")
        user.clear()
        user.send_keys("nobody")   # failures count per (name, address): admin stays usable
        password = browser.find_element(By.CSS_SELECTOR, "input[name=password]")
        password.clear()
        password.send_keys("wrong-password")
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait(browser, lambda d, want=expected: want in d.find_element(By.ID, "login-error").text, 10, expected)
        wait(browser, lambda d: d.find_element(By.CSS_SELECTOR, "form button[type=submit]").is_enabled())
    assert "{" not in browser.find_element(By.ID, "login-error").text  # the message, never raw JSON
    screenshot(browser, "signin-throttled")
    assert "/login" in browser.current_url


def test_sign_in_page_as_user(app, browser):
    admin = app.admin()
    assert admin.post("/admin/users", json={"username": "alice", "password": "alice-pass"}).status_code == 200
    # by keyboard alone: the name field has the focus, Tab to the password, Enter signs in
    browser.get(app.url + "/login")
    name = find(browser, "input[name=username]")
    wait(browser, lambda d: d.switch_to.active_element == name)
    name.send_keys("alice", Keys.TAB)
    browser.switch_to.active_element.send_keys("alice-pass", Keys.ENTER)
    wait_text(browser, "#quota", "0 of 4 containers")
    # the skip link comes before the navigation and moves the focus to the page's content
    browser.execute_script("document.querySelector('.brand').focus(); window.__marker = 1")
    ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()
    assert browser.switch_to.active_element.text == "Skip to content"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait(browser, lambda d: d.switch_to.active_element.get_attribute("id") == "main")
    assert browser.execute_script("return window.__marker") == 1
    assert not browser.find_elements(By.CSS_SELECTOR, "nav[aria-label=Admin]")
    assert_accessible(browser, "containers-empty")
    sign_out(browser)


# -- files ----------------------------------------------------------------------------
SIZE = 50 * 1024 * 1024
# The same bytes in the page (a File made there, dropped on the page) and here.
MAKE_FILE = """
const size = arguments[0], bytes = new Uint8Array(size);
for (let i = 0; i < size; i++) bytes[i] = (i * 31 + (i >> 12)) & 255;
return new File([bytes], arguments[1], {type: 'application/octet-stream'});
"""


def expected_bytes() -> bytes:
    """MAKE_FILE's bytes: block k of 4 KiB is the first block with k added to each byte."""
    first = bytes((j * 31) & 255 for j in range(4096))
    shifted = [first.translate(bytes((x + k) & 255 for x in range(256))) for k in range(256)]
    return b"".join(shifted[k & 255] for k in range(SIZE // 4096))


@pytest.fixture(scope="module")
def alice_browser(app, browser):
    sign_in(browser, app.url, "alice", "alice-pass")
    return browser


def test_namespace_upload_by_drop_with_progress_then_download(app, alice_browser, tmp_path):
    b = alice_browser
    b.get(app.url + "/storage/namespaces")
    find(b, "#namespace-form input[name=name]").send_keys("photos")
    b.find_element(By.CSS_SELECTOR, "#namespace-form button[type=submit]").click()
    wait_text(b, "#namespaces", "photos")
    assert_accessible(b, "namespaces")
    screenshot(b, "namespaces")
    b.find_element(By.LINK_TEXT, "photos").click()
    wait_text(b, "#files", "No files yet")
    # Drop a 50 MB File made in the page; sample the progress bar while it uploads.
    started = time.monotonic()
    b.execute_script(
        "const file = (function () {" + MAKE_FILE + "})(arguments[0], 'big.bin');"
        "window.__progress = [];"
        "const sample = () => { const bar = document.querySelector('#uploads progress');"
        "  if (bar) window.__progress.push([bar.value, bar.max]);"
        "  if (!bar || bar.value < bar.max) setTimeout(sample, 5); };"
        "const dt = new DataTransfer(); dt.items.add(file);"
        "dt.items.add(new File(['hello from the page'], 'note.txt', {type: 'text/plain'}));"
        "document.getElementById('drop-zone')"
        "  .dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));"
        "sample();", SIZE)
    wait_text(b, "#uploads li.done .note", "50 MB uploaded", 60)
    took = time.monotonic() - started
    progress = b.execute_script("return window.__progress")
    between = sorted({v for v, m in progress if 0 < v < m})
    print(f"50 MB dropped and uploaded in {took:.1f} s; progress bar values seen: {len(between)} between 0 and full")
    assert between, progress[:20]
    wait_text(b, "#files", "big.bin")
    # both dropped files, each with its own bar
    wait(b, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#uploads li.done progress")) == 2)
    wait_text(b, "#files", "note.txt")
    alice = app.login("alice", "alice-pass")
    assert alice.get("/storage/photos/note.txt").content == b"hello from the page"
    row = b.find_element(By.CSS_SELECTOR, "#files tr[data-name='big.bin']")
    assert "50 MB" in row.text
    assert_accessible(b, "files")
    screenshot(b, "files", docs=True)
    b.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    screenshot(b, "files-dark", docs=True)
    b.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    # the direct link is the same-origin URL the server serves
    link = row.find_element(By.LINK_TEXT, "big.bin").get_attribute("href")
    assert link == app.url + "/storage/photos/big.bin"
    # download by clicking (the session cookie carries the credential) and compare
    b.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path),
                                                      "eventsEnabled": True})
    row.find_element(By.LINK_TEXT, "big.bin").click()
    target = tmp_path / "big.bin"
    wait(b, lambda d: target.is_file() and target.stat().st_size == SIZE, 60, "no download")
    assert target.read_bytes() == expected_bytes()
    # delete with confirmation
    row.find_element(By.CSS_SELECTOR, "button[aria-label='Delete big.bin']").click()
    find(b, "dialog[open] button.danger").click()
    wait(b, lambda d: "big.bin" not in d.find_element(By.ID, "files").text)
    assert alice.get("/storage/photos/big.bin").status_code == 404


# -- API tokens -------------------------------------------------------------------------
def test_token_created_shown_once_then_deleted(app, alice_browser):
    b = alice_browser
    b.get(app.url + "/api/tokens")
    wait_text(b, "#tokens", "No API tokens")
    find(b, "#token-form input[name=name]").send_keys("ci")
    scope = b.find_element(By.CSS_SELECTOR, "#token-form fieldset.scope")
    Select(scope.find_element(By.CSS_SELECTOR, "select[aria-label$=service]")).select_by_value("compute")
    Select(scope.find_element(By.CSS_SELECTOR, "select[aria-label$=resource]")).select_by_value("containers")
    assert scope.find_element(By.CSS_SELECTOR, "input[value=read]").is_selected()
    scope.find_element(By.CSS_SELECTOR, "input[value=create]").click()
    b.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    token = find(b, "#token-value").text
    assert token.startswith("ecloud_")
    assert "shown only once" in text_of(b, "#new-token")
    wait_text(b, "#tokens", "ci")
    alice = app.login("alice", "alice-pass")
    (t,) = alice.get("/api/tokens").json()
    assert {k: sorted(v) for k, v in t["scopes"].items()} == {f"compute.{alice.user_id}.containers": ["create", "read"]}
    # the token works, as scoped
    api = Client(app.url, token)
    assert api.get("/compute/containers").status_code == 200
    assert api.get("/compute/ssh-keys").status_code == 403
    assert_accessible(b, "tokens")
    screenshot(b, "tokens", docs=True)
    # shown once: a reload lists it without its value
    b.refresh()
    wait_text(b, "#tokens", "ci")
    assert "ecloud_" not in b.find_element(By.TAG_NAME, "body").text
    find(b, "button[aria-label='Delete token ci']").click()
    find(b, "dialog[open] button.danger").click()
    wait_text(b, "#tokens", "No API tokens")
    assert api.get("/compute/containers").status_code == 401


# -- admin ---------------------------------------------------------------------------------
def test_admin_pages_hidden_from_a_non_admin(app, alice_browser):
    b = alice_browser
    b.get(app.url + "/compute/containers")
    find(b, "#sign-out")
    assert not b.find_elements(By.CSS_SELECTOR, "nav[aria-label=Admin]")
    assert not b.find_elements(By.CSS_SELECTOR, "a[href^='/admin']")
    b.get(app.url + "/admin/users")   # typed by hand: the API's own answer, as its message
    wait_text(b, "#admin-list", "admin")
    assert "{" not in text_of(b, "#admin-list")
    for path, where in (("/admin/logs", "#log-note"), ("/admin/audit", "#audit")):
        b.get(app.url + path)
        wait_text(b, where, "admin")
        assert "{" not in text_of(b, where)
    sign_out(b)


def test_admin_pages(app, browser):
    b = browser
    sign_in(b, app.url, "admin", app.admin_password)
    find(b, "nav[aria-label=Admin] a[href='/admin/users']").click()
    wait_text(b, "#admin-list", "alice")
    find(b, "#user-form input[name=username]").send_keys("carol")
    b.find_element(By.CSS_SELECTOR, "#user-form input[name=password]").send_keys("carol-pass")
    b.find_element(By.CSS_SELECTOR, "#user-form button[type=submit]").click()
    wait_text(b, "#admin-list", "carol")
    # make carol an admin, then take it back (PUT /admin/users/{id}); no control on one's own row
    carol = next(u for u in app.admin().get("/admin/users").json() if u["username"] == "carol")
    carol_admin = f"tr[data-id='{carol['user_id']}'] td:nth-child(4)"
    find(b, "button[aria-label='Make admin carol']").click()
    wait_text(b, "#status", "carol is now an admin")
    wait(b, lambda d: d.find_element(By.CSS_SELECTOR, carol_admin).text == "yes")
    assert app.login("carol", "carol-pass").get("/admin/users").status_code == 200
    admin_row = b.find_element(By.CSS_SELECTOR, "tr[data-id] td:first-child").find_element(By.XPATH, "..")
    assert admin_row.text.startswith("admin") and "(you)" in admin_row.text
    assert not admin_row.find_elements(By.CSS_SELECTOR, "[aria-label^='Make admin'], [aria-label^='Remove admin']")
    assert_accessible(b, "admin-users")
    screenshot(b, "admin-users", docs=True)
    find(b, "button[aria-label='Remove admin from carol']").click()
    wait_text(b, "#status", "carol is no longer an admin")
    wait(b, lambda d: d.find_element(By.CSS_SELECTOR, carol_admin).text == "no")
    assert app.login("carol", "carol-pass").get("/admin/users").status_code == 403
    screenshot(b, "admin-users")
    for path, needle in (("/compute/admin/containers", "No containers"), ("/admin/namespaces", "photos"),
                         ("/admin/sessions", "alice"), ("/admin/hosts", "up")):
        b.find_element(By.CSS_SELECTOR, f"nav[aria-label=Admin] a[href='{path}']").click()
        wait_text(b, "#admin-list", needle)
        assert_accessible(b, path)
        screenshot(b, "admin-" + path.rsplit("/", 1)[1])
    b.find_element(By.CSS_SELECTOR, "nav[aria-label=Admin] a[href='/admin/users']").click()
    find(b, "button[aria-label='Delete user carol']").click()
    find(b, "dialog[open] button.danger").click()
    wait(b, lambda d: "carol" not in d.find_element(By.ID, "admin-list").text)
    errors = console_errors(b)
    assert not errors, "\n".join(errors)


# -- operations: health, logs, audit, admin actions ---------------------------------------
def admin_on(b, app, path: str) -> None:
    if not b.find_elements(By.CSS_SELECTOR, "nav[aria-label=Admin]"):
        sign_in(b, app.url, "admin", app.admin_password)
    find(b, f"nav[aria-label=Admin] a[href='{path}']").click()


def failed_login(app, name: str) -> None:
    assert requests.post(app.url + "/api/login", json={"username": name, "password": "x"}).status_code == 401


def test_health_live_with_charts(app, browser):
    b = browser
    admin_on(b, app, "/admin/health")
    find(b, "tr[data-host]")
    host = attribute_of(b, "tr[data-host]", "data-host")
    updated = "#health-updated"
    first = wait(b, lambda d: d.find_element(By.CSS_SELECTOR, updated).get_attribute("data-timestamp"))
    b.execute_script("window.__sameDocument = true")
    # a new sample arrives without a reload (the server sends one a second here)
    wait(b, lambda d: d.find_element(By.CSS_SELECTOR, updated).get_attribute("data-timestamp") != first, 5,
         "no new sample")
    assert b.execute_script("return window.__sameDocument") is True
    wait(b, lambda d: d.execute_script("return document.getElementById('main').dataset.historyLoaded") == "yes")
    # the charts start from the metrics API's history (more points than live samples seen)
    live = int(b.find_element(By.CSS_SELECTOR, updated).get_attribute("data-live"))
    series = app.admin().get(f"/api/metrics/nodes/{host}", params={
        "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600)),
        "end": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).json()["series"][host]
    for kind in ("cpu", "mem"):
        # one read of the chart as drawn now: the row is drawn anew on every sample
        drawn, plotted = b.execute_script(
            "const c = document.querySelector(arguments[0]);"
            "return [Number(c.dataset.points), c.querySelector('polyline').getAttribute('points').split(' ').length]",
            f"tr[data-host='{host}'] svg.chart.{kind}")
        assert drawn > live and drawn >= len(series) - 2, (drawn, live, len(series))
        assert plotted == drawn
    assert "%" in text_of(b, f"tr[data-host='{host}'] td.cpu")
    assert text_of(b, "#cluster-hosts") == "1" and text_of(b, "#cluster-pressure") == "none"
    assert_accessible(b, "health")
    screenshot(b, "health", docs=True)
    b.refresh()   # a new path (no API route): a reload gets the page
    find(b, "tr[data-host]")


def test_logs_live_filter_and_pause(app, browser):
    b = browser
    admin_on(b, app, "/admin/logs")
    wait_text(b, "#log-state", "live")
    marker = f"logmark{time.time_ns()}"
    failed_login(app, marker)   # "login: <name> failed from ..." at INFO, from the core
    wait_text(b, "#log-lines", marker, 5)
    Select(b.find_element(By.CSS_SELECTOR, "select[name=level]")).select_by_value("WARN")
    wait(b, lambda d: marker not in d.find_element(By.ID, "log-lines").text)
    wait_text(b, "#log-state", "live")
    time.sleep(0.3)   # the backlog of WARN and above has arrived
    assert marker not in text_of(b, "#log-lines")
    levels = {li.get_attribute("data-level") for li in b.find_elements(By.CSS_SELECTOR, "#log-lines li")}
    assert levels <= {"WARN", "ERROR"}, levels
    assert "level=WARN" in b.current_url
    assert_accessible(b, "logs")   # here: axe over 500 lines takes seconds
    Select(b.find_element(By.CSS_SELECTOR, "select[name=level]")).select_by_value("INFO")
    wait_text(b, "#log-lines", marker, 5)   # the server's backlog has it again
    find(b, "#log-pause").click()
    held = f"held{time.time_ns()}"
    failed_login(app, held)
    wait_text(b, "#log-note", "held", 5)
    assert held not in text_of(b, "#log-lines")
    find(b, "#log-pause").click()
    wait_text(b, "#log-lines", held, 2)
    screenshot(b, "logs")


def test_audit_filters_and_pages(app, browser):
    b = browser
    marker = f"auditmark{time.time_ns()}"
    for _ in range(11):   # two pages of 10 whatever ran before (this test alone made 3 events)
        admin = app.admin()
    failed_login(app, marker)
    admin_on(b, app, "/admin/audit")
    page1 = admin.get("/admin/audit", params={"limit": 10}).json()
    assert page1.get("next_before"), page1
    page2 = admin.get("/admin/audit", params={"limit": 10, "before": page1["next_before"]}).json()
    Select(find(b, "select[name=limit]")).select_by_value("10")
    b.find_element(By.CSS_SELECTOR, "#audit-filters button[type=submit]").click()
    rows = "#audit tbody tr"
    ids = lambda d: [int(r.get_attribute("data-id")) for r in d.find_elements(By.CSS_SELECTOR, rows)]  # noqa: E731
    wait(b, lambda d: ids(d) == [e["id"] for e in page1["events"]], 5, lambda: str(ids(b)))
    find(b, "#audit-older").click()
    wait(b, lambda d: ids(d) == [e["id"] for e in page2["events"]], 5, lambda: str(ids(b)))
    wait_text(b, "#audit-page", "Page 2")
    find(b, "#audit-newer").click()
    wait(b, lambda d: ids(d) == [e["id"] for e in page1["events"]], 5)
    Select(find(b, "#audit-filters select[name=event]")).select_by_value("login")
    b.find_element(By.CSS_SELECTOR, "#audit-filters button[type=submit]").click()
    wait_text(b, "#audit", marker, 5)
    shown = b.find_elements(By.CSS_SELECTOR, rows)
    assert {r.get_attribute("data-event") for r in shown} == {"login"}
    # the event in words (as on a user's Activity page), its code below
    mine = next(r for r in shown if marker in r.text)
    assert mine.find_element(By.CSS_SELECTOR, "td:nth-child(2)").text == "Sign-in failed\nlogin"
    assert_accessible(b, "audit")
    screenshot(b, "audit")


def test_admin_actions(app, browser):
    b = browser
    admin = app.admin()
    assert admin.post("/admin/users", json={"username": "dave", "password": "dave-pass"}).status_code == 200
    dave = app.login("dave", "dave-pass")
    admin_on(b, app, "/admin/users")
    find(b, "button[aria-label='Set password of dave']").click()
    find(b, "dialog[open] input[type=password]").send_keys("dave-new-pass")
    assert_accessible(b, "set-password")
    b.find_element(By.CSS_SELECTOR, "dialog[open] button[type=submit]").click()
    wait_text(b, "#status", "dave has a new password")
    assert dave.get("/api/session").status_code == 401   # the password change ended it
    dave = app.login("dave", "dave-new-pass")
    find(b, "button[aria-label='Remove second factors of dave']").click()
    find(b, "dialog[open] button.danger").click()
    wait_text(b, "#status", "the user has no second factor")   # the server's 404, as its message
    b.find_element(By.CSS_SELECTOR, "nav[aria-label=Admin] a[href='/admin/sessions']").click()
    find(b, "button[aria-label^='End session of dave']").click()
    find(b, "dialog[open] button.danger").click()
    wait_text(b, "#status", "The session of dave ended")
    assert dave.get("/api/session").status_code == 401
    wait(b, lambda d: "dave" not in d.find_element(By.ID, "admin-list").text)
    assert_accessible(b, "admin-sessions")
    errors = console_errors(b)
    assert not errors, "\n".join(errors)
