"""The settings area of the dashboard in headless Chromium against the session's real
appliance (docs/dashboard.md, docs/accounts.md): display name and password, sessions,
the activity trail, service accounts. Every check of an effect goes through the API
with other clients (a second session, the service account's token)."""
from __future__ import annotations

import itertools
import time

import pytest
import requests
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
from harness import Client
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

OLD, NEW = "acct-old-pass", "acct-new-pass"
_n = itertools.count()


@pytest.fixture(scope="module")
def person(appliance, admin, browser):
    """A new user, signed in in the browser; the dict keeps the current password."""
    name = f"acct{int(time.time()) % 100000}_{next(_n)}"
    r = admin.post("/admin/users", json={"username": name, "password": OLD, "display_name": "Acct"})
    assert r.status_code == 200, r.text
    sign_in(browser, appliance.url, name, OLD)
    return {"name": name, "password": OLD, "id": r.json()["user_id"]}


def page_session(browser, appliance) -> Client:
    """The browser's own session, as an API client."""
    token = browser.execute_script("return JSON.parse(localStorage.getItem('appliance.session')).token")
    return Client(appliance.url, token)


def submit(browser, form: str) -> None:
    browser.find_element(By.CSS_SELECTOR, f"{form} button[type=submit]").click()


def confirm(browser) -> None:
    find(browser, "dialog[open] button.danger").click()


def test_display_name_and_password(appliance, browser, person):
    other = appliance.login(person["name"], OLD)   # a second session, ended by the change
    find(browser, "header nav a[href='/settings/profile']").click()
    wait_text(browser, "h1", "Profile and password")
    assert find(browser, "nav[aria-label=Settings] a[aria-current=page]").text == "Profile and password"
    name = find(browser, "input[name=display_name]")
    assert name.get_attribute("value") == "Acct"
    name.clear()
    name.send_keys("Ada Lovelace")
    submit(browser, "#profile-form")
    wait_text(browser, "#status", "Display name changed to Ada Lovelace")
    assert text_of(browser, "header .who") == "Ada Lovelace"
    browser.get(appliance.url + "/settings")   # a new load: the server's name, not the page's memory
    wait_text(browser, "h1", "Profile and password")
    assert browser.current_url == appliance.url + "/settings/profile"
    assert text_of(browser, "header .who") == "Ada Lovelace"
    assert other.get("/api/session").json()["display_name"] == "Ada Lovelace"
    assert_accessible(browser, "settings-profile")
    screenshot(browser, "settings", docs=True)

    def change(current: str, new: str, again: str) -> None:
        for field, value in (("current_password", current), ("new_password", new), ("confirm_password", again)):
            box = browser.find_element(By.CSS_SELECTOR, f"input[name={field}]")
            box.clear()
            box.send_keys(value)
        submit(browser, "#password-form")

    change(OLD, NEW, NEW + "x")
    wait_text(browser, "#status", "The new passwords differ")
    change("not-the-password", NEW, NEW)
    wait_text(browser, "#status", "current password is incorrect")   # the server's message; still signed in
    assert "/settings/profile" in browser.current_url and other.get("/api/session").status_code == 200
    change(OLD, NEW, NEW)
    wait_text(browser, "#status", "Password changed. Your other sessions were ended")
    assert other.get("/api/session").status_code == 401
    assert page_session(browser, appliance).get("/api/session").status_code == 200
    old = requests.post(appliance.url + "/api/login", json={"username": person["name"], "password": OLD})
    assert old.status_code == 401
    appliance.login(person["name"], NEW)
    person["password"] = NEW
    assert not console_errors(browser)


def test_sessions_end_one_then_all_others(appliance, browser, person):
    first, second = (appliance.login(person["name"], person["password"]) for _ in range(2))
    [mine] = [s for s in first.get("/api/settings/sessions").json() if s["is_current"]]
    find(browser, "nav[aria-label=Settings] a[href='/settings/sessions']").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"#sessions tr[data-id='{mine['id']}']"))
    current = find(browser, "#sessions tr.current")
    assert "This session" in current.text and "Chrome" in current.text
    row = find(browser, f"#sessions tr[data-id='{mine['id']}']")
    assert "Python requests" in row.text and "127.0.0.1" in row.text
    assert_accessible(browser, "settings-sessions")
    screenshot(browser, "settings-sessions")
    row.find_element(By.CSS_SELECTOR, "button.danger").click()
    confirm(browser)
    wait_text(browser, "#status", "Session ended")
    wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, f"#sessions tr[data-id='{mine['id']}']"))
    assert first.get("/api/session").status_code == 401
    assert second.get("/api/session").status_code == 200
    find(browser, "#end-others").click()
    confirm(browser)
    wait_text(browser, "#status", "Every other session ended")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sessions tbody tr")) == 1)
    assert second.get("/api/session").status_code == 401
    assert find(browser, "#end-others").get_attribute("disabled") is not None
    assert not console_errors(browser)


def test_activity_trail(appliance, browser, person):
    me = page_session(browser, appliance)
    for i in range(12):   # enough for a second page of 20
        assert me.put("/api/settings/profile", json={"display_name": f"Ada {i}"}).status_code == 200
    every = me.get("/api/settings/audit?limit=500").json()["events"]
    find(browser, "nav[aria-label=Settings] a[href='/settings/activity']").click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#activity tbody tr")) == 20)
    first = find(browser, "#activity tbody tr")
    assert first.get_attribute("data-event") == "profile.updated" and "Profile updated" in first.text
    find(browser, "#older").click()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#activity tbody tr")) == len(every))
    shown = [r.get_attribute("data-id") for r in browser.find_elements(By.CSS_SELECTOR, "#activity tbody tr")]
    assert shown == [str(e["id"]) for e in every]   # newest first, no gap or repeat between pages
    assert not find(browser, "#older").is_displayed()
    body = text_of(browser, "#activity")
    for said in ("Signed in", "Password change refused: wrong current password", "Password changed", "Session ended"):
        assert said in body, said
    # the filter, kept in the URL (a reload keeps it)
    Select(find(browser, "#event-filter")).select_by_value("password.changed")
    wait(browser, lambda d: "event=password.changed" in d.current_url)
    browser.refresh()
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#activity tbody tr")) == 2)
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#activity tbody tr")]
    assert "Password changed" in rows[0] and "OK" in rows[0] and "refused" in rows[1] and "Failed" in rows[1]
    assert "your account" in rows[0]   # the target is the user's own id
    assert_accessible(browser, "settings-activity")
    screenshot(browser, "settings-activity")
    assert not console_errors(browser)


def test_service_account_scopes_tokens_delete(appliance, browser, person):
    uid = person["id"]
    find(browser, "nav[aria-label=Settings] a[href='/settings/service-accounts']").click()
    wait_text(browser, "#service-accounts", "No service accounts")
    find(browser, "input[name=sa-name]").send_keys("ci-bot")
    scope = find(browser, "#service-account-form fieldset.scope")
    Select(scope.find_element(By.CSS_SELECTOR, "select[aria-label$=service]")).select_by_value("storage")
    scope.find_element(By.CSS_SELECTOR, "input[value=create]").click()
    submit(browser, "#service-account-form")
    wait_text(browser, "h1", "ci-bot")
    me = page_session(browser, appliance)
    [account] = me.get("/api/service-accounts").json()
    assert {k: sorted(v) for k, v in account["scopes"].items()} == {f"storage.{uid}": ["create", "read"]}
    assert browser.current_url.endswith(f"/settings/service-accounts/{account['id']}")

    find(browser, "input[name=token-name]").send_keys("deploy")
    submit(browser, "#sa-token-form")
    token = find(browser, "#token-value").text
    assert token.startswith("ecloud_") and "shown only once" in text_of(browser, "#new-token")
    wait_text(browser, "#sa-tokens", "deploy")
    bot = Client(appliance.url, token)
    assert bot.post("/storage/namespaces", json={"name": f"sa-{uid.lower()}-a"}).status_code == 200
    assert bot.get("/compute/containers").status_code == 403   # outside its scopes

    # the personal token list shows it as the account's, linked to the account's page
    find(browser, "header nav a[href='/api/tokens']").click()
    link = find(browser, f"#tokens a[href='/settings/service-accounts/{account['id']}']")
    assert "deploy" in link.find_element(By.XPATH, "ancestor::tr").text
    link.click()
    wait_text(browser, "h1", "ci-bot")
    browser.refresh()   # the page's path works on a reload; the token is not shown again
    wait_text(browser, "#sa-tokens", "deploy")
    assert "ecloud_" not in text_of(browser, "main")
    scope = find(browser, "#sa-scopes-form fieldset.scope")
    service = Select(scope.find_element(By.CSS_SELECTOR, "select[aria-label$=service]"))
    assert service.first_selected_option.text == "storage"
    create = scope.find_element(By.CSS_SELECTOR, "input[value=create]")
    assert create.is_selected()
    create.click()   # narrowed to read
    submit(browser, "#sa-scopes-form")
    wait_text(browser, "#status", "Scopes saved")
    assert me.get(f"/api/service-accounts/{account['id']}").json()["scopes"] == {f"storage.{uid}": ["read"]}
    assert bot.post("/storage/namespaces", json={"name": f"sa-{uid.lower()}-b"}).status_code == 403
    listed = bot.get("/storage/namespaces")
    assert listed.status_code == 200 and f"sa-{uid.lower()}-a" in listed.text   # reading still allowed
    assert_accessible(browser, "settings-service-account")
    screenshot(browser, "settings-service-account")

    find(browser, "#delete-sa").click()
    confirm(browser)
    wait_text(browser, "#service-accounts", "No service accounts")
    assert "deleted" in text_of(browser, "#status")
    assert bot.get("/storage/namespaces").status_code == 401
    assert_accessible(browser, "settings-service-accounts")
    assert not console_errors(browser)
