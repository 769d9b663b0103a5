"""Signing in and out of the dashboard in a real browser (fake guests: no lock)."""
from __future__ import annotations

import pytest
from browser_support import assert_accessible, console_errors, find, screenshot, sign_in, sign_out, wait, wait_text
from harness import Appliance
from selenium.webdriver.common.by import By


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    a = Appliance(tmp_path_factory.mktemp("dash-signin"), guest_driver="fake", login_max_failures=2)
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
    sign_in(browser, app.url, "alice", "alice-pass")
    wait_text(browser, "#quota", "0 of 3")
    assert not browser.find_elements(By.CSS_SELECTOR, "nav[aria-label=Admin]")
    assert_accessible(browser, "containers-empty")
    sign_out(browser)
