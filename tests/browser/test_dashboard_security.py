"""A security key registered and used to sign in, in headless Chromium with its
WebDriver virtual authenticator (a CTAP2 key that really signs), against the
session's real appliance (issue 18, docs/accounts.md). The page is
http://localhost:<port>: the RP id is "localhost" (an IP address is none), and
localhost is a secure context for WebAuthn."""
from __future__ import annotations

import pyotp
import requests
from browser_support import assert_accessible, console_errors, find, screenshot, sign_in, sign_out, wait, wait_text
from selenium.webdriver.common.by import By
from selenium.webdriver.common.virtual_authenticator import Protocol, Transport, VirtualAuthenticatorOptions

PASSWORD = "pw-123456"


def open_security(browser) -> None:
    """Settings in the header, then Security in the settings' own navigation."""
    find(browser, "header nav a[href='/settings/profile']").click()
    find(browser, "nav[aria-label=Settings] a[href='/settings/security']").click()


def test_register_a_key_then_sign_in_with_it(appliance, admin, browser):
    name = "keyuser"
    assert admin.post("/admin/users", json={"username": name, "password": PASSWORD}).status_code == 200
    base = f"http://localhost:{appliance.http_port}"
    options = VirtualAuthenticatorOptions()
    options.protocol, options.transport = Protocol.CTAP2, Transport.USB
    options.has_resident_key, options.has_user_verification = False, True
    options.is_user_consenting, options.is_user_verified = True, True
    browser.add_virtual_authenticator(options)
    try:
        sign_in(browser, base, name, PASSWORD)
        open_security(browser)
        wait_text(browser, "h1", "Security")
        wait_text(browser, "#security-keys", "No security keys yet")
        assert_accessible(browser, "security")
        find(browser, "input[name=key-name]").send_keys("virtual key")
        browser.find_element(By.CSS_SELECTOR, "#add-key").click()
        wait_text(browser, "#status", "Security key added")
        wait_text(browser, "#security-keys", "virtual key")
        assert "Security key" in browser.find_element(By.CSS_SELECTOR, "#security-keys tbody tr").text
        [credential] = browser.get_credentials()
        assert credential.rp_id == "localhost"
        registered_count = credential.sign_count
        screenshot(browser, "security")

        sign_out(browser)
        find(browser, "input[name=username]").send_keys(name)
        browser.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait_text(browser, "#second-step h1", "Two-factor authentication")
        assert_accessible(browser, "second-step")
        browser.find_element(By.CSS_SELECTOR, "#use-key").click()
        wait_text(browser, "h1", "Containers")
        assert browser.current_url == base + "/compute/containers"
        # the key really signed (its counter went up) and the server saw it used
        wait(browser, lambda d: d.get_credentials()[0].sign_count == registered_count + 1)
        token = browser.execute_script("return JSON.parse(localStorage.getItem('appliance.session')).token")
        keys = requests.get(appliance.url + "/api/settings/keys", headers={"Authorization": f"Bearer {token}"})
        assert keys.status_code == 200 and keys.json()["keys"][0]["last_used_at"] is not None

        # the authenticator app as well, from the same page
        open_security(browser)
        assert find(browser, "#totp-status").text == "Off."
        find(browser, "#totp-begin").click()
        secret = find(browser, "#totp-secret").text
        find(browser, "input[name=totp-code]").send_keys(pyotp.TOTP(secret).now())
        browser.find_element(By.CSS_SELECTOR, "#totp-enable button[type=submit]").click()
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#recovery-codes li")) == 10)
        assert_accessible(browser, "security-recovery-codes")
        browser.refresh()   # on, as GET /api/settings/totp says: since when, and the codes left
        wait(browser, lambda d: "10 of 10 recovery codes left" in find(d, "#totp-status").text)
        assert browser.find_elements(By.CSS_SELECTOR, "#totp-disable")
        assert not console_errors(browser)
    finally:
        browser.remove_virtual_authenticator()
