"""Headless Chromium driven by Selenium, the way a person uses the dashboard:
Debian's chromium and chromium-driver (scripts/install-deps.sh), one browser
per test module. Screenshots go to the artefact directory
(``APPLIANCE_TEST_ARTEFACTS``, default /tmp/appliance-test-artefacts/browser);
axe-core (from dashboard/node_modules) checks each page."""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "dashboard" / "node_modules" / "axe-core" / "axe.min.js"
ARTEFACTS = Path(os.environ.get("APPLIANCE_TEST_ARTEFACTS", "/tmp/appliance-test-artefacts")) / "browser"
DOCS = ROOT / "docs"


def chromium(width: int = 1280, height: int = 860) -> WebDriver:
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver:
        pytest.fail("chromium and chromium-driver are needed: run scripts/install-deps.sh")
    if not AXE.is_file():
        pytest.fail("dashboard/node_modules is missing: run make venv")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--disable-extensions", "--no-first-run",
                "--disable-background-networking", "--disable-search-engine-choice-screen"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=driver, log_output=str(ARTEFACTS / "chromedriver.log"))
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    d = webdriver.Chrome(options=options, service=service)
    d.set_script_timeout(30)
    return d


def wait(driver: WebDriver, condition, timeout: float = 10, message: str | Callable[[], str] = ""):
    """Wait for *condition*; a callable *message* describes the page as it is at the timeout
    (an f-string is built before the wait, and showed a page the test had not yet waited for)."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.05,
                             ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except TimeoutException as e:
        raise TimeoutException(message() if callable(message) else message, e.screen, e.stacktrace) from None


def find(driver: WebDriver, css: str, timeout: float = 10):
    return wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, css), timeout, f"no {css}")


def read_fresh(driver: WebDriver, css: str, read: Callable, tries: int = 50):
    """*read* of the element *css* matches now, found again when a page redraws it between
    the find and the read (the Health page draws its rows anew on every sample)."""
    for _ in range(tries - 1):
        try:
            return read(driver.find_element(By.CSS_SELECTOR, css))
        except StaleElementReferenceException:
            time.sleep(0.02)
    return read(driver.find_element(By.CSS_SELECTOR, css))


def text_of(driver: WebDriver, css: str) -> str:
    return read_fresh(driver, css, lambda e: e.text)


def attribute_of(driver: WebDriver, css: str, name: str) -> str | None:
    return read_fresh(driver, css, lambda e: e.get_attribute(name))


def shown(driver: WebDriver, css: str) -> str | None:
    """The element's text now (None if there is none): for timeout messages."""
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else None


def wait_text(driver: WebDriver, css: str, needle: str, timeout: float = 10) -> str:
    wait(driver, lambda d: needle in d.find_element(By.CSS_SELECTOR, css).text, timeout,
         lambda: f"{needle!r} never in {css}: {shown(driver, css)!r}")
    return text_of(driver, css)


def sign_in(driver: WebDriver, base: str, username: str, password: str) -> None:
    driver.get(base + "/login")
    find(driver, "input[name=username]").send_keys(username)
    driver.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    find(driver, "#sign-out")


def sign_out(driver: WebDriver) -> None:
    find(driver, "#sign-out").click()
    find(driver, "input[name=username]")


def screenshot(driver: WebDriver, name: str, docs: bool = False) -> Path:
    """The page as shown, as an artefact (and as docs/dashboard-<name>.png for the README)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    if docs:
        shutil.copyfile(path, DOCS / f"dashboard-{name}.png")
    return path


def axe_violations(driver: WebDriver, rules: list[str] | None = None, impacts=("serious", "critical")) -> list[dict]:
    """axe-core run in the page (all its rules, or only *rules*): the violations of the given impacts."""
    if not driver.execute_script("return typeof window.axe === 'object'"):
        driver.execute_script(AXE.read_text())
    options = {"resultTypes": ["violations"], **({"runOnly": {"type": "rule", "values": rules}} if rules else {})}
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, arguments[0]).then(r => done(r.violations), e => done(String(e)));", options)
    assert isinstance(result, list), result
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:5]} for v in result if v["impact"] in impacts]


def assert_accessible(driver: WebDriver, name: str) -> None:
    """No serious or critical axe-core violation on the page: every rule in the light
    theme, and the colour rules again in the dark one (the rest does not change)."""
    for scheme, rules in (("light", None), ("dark", ["color-contrast", "link-in-text-block"])):
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                               {"features": [{"name": "prefers-color-scheme", "value": scheme}]})
        time.sleep(0.05)
        found = axe_violations(driver, rules)
        assert not found, f"{name} ({scheme}): {found}"
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def console_errors(driver: WebDriver) -> list[str]:
    """The page's errors (script errors, CSP violations); not the browser's own note
    of an API answer of 4xx, which the page shows as its message."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"
            and "the server responded with a status of 4" not in e["message"]]
