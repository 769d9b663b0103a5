import pytest
from browser_support import chromium, screenshot


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per module."""
    driver = chromium()
    yield driver
    driver.quit()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test leaves the page it failed on, and its status line, as artefacts."""
    report = yield
    driver = item.funcargs.get("browser") if hasattr(item, "funcargs") else None
    if report.failed and driver is not None:
        path = screenshot(driver, f"FAILED-{item.name}")
        try:
            status = driver.execute_script("return document.getElementById('status')?.textContent")
            console = "\n".join(e["message"] for e in driver.get_log("browser"))
        except Exception as e:  # noqa: BLE001 - the report must not fail over it
            status, console = repr(e), ""
        report.sections.append(("browser", f"screenshot: {path}\nurl: {driver.current_url}\nstatus line: {status}\n"
                                           f"console:\n{console}"))
    return report
