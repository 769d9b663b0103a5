import pytest
from browser_support import chromium


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per module."""
    driver = chromium()
    yield driver
    driver.quit()
