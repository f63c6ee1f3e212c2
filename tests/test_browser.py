"""A real browser (Debian chromium + chromedriver) drives the dashboard against the live server.

Log in through the admin, open the dashboard, press "Run now", confirm, and see
the run with its rows; save a full-page screenshot under artifacts/ and fail on
any browser console error. Skips only when chromium or chromedriver is absent.
"""
from __future__ import annotations

import base64
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.dashboard_helpers import MOVER_PERMS, PASSWORD, count, make_user
from tests.move.helpers import seed_orders
from tiering.models import MigrationRun, RunState

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

pytestmark = [
    pytest.mark.django_db(databases="__all__", transaction=True),
    pytest.mark.skipif(
        not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
        reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
               "apt-get install chromium chromium-driver",
    ),
]


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="hotcold-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", f"--user-data-dir={profile}", "--window-size=1280,1024"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def click_and_wait(driver, element, timeout: float = 20) -> None:
    """Click something that loads a new page and wait until that page has loaded."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old_page = driver.find_element(By.TAG_NAME, "html")
    element.click()
    wait = WebDriverWait(driver, timeout)
    wait.until(expected_conditions.staleness_of(old_page))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def full_page_screenshot(driver, path: Path) -> None:
    """The whole document, beyond the viewport, through the DevTools protocol."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot",
                                  {"format": "png", "captureBeyondViewport": True, "clip": clip})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def test_run_now_in_a_real_browser(live_server, browser, settings):
    from selenium.webdriver.common.by import By

    settings.TIERING = {**settings.TIERING, "HOT": "default", "COLD": "cold", "RUN_IN_PROCESS": True}
    seed_orders("default", 40, lines=2, old=True)
    seed_orders("default", 12, lines=2, old=False, start_pk=41)
    seed_orders("cold", 8, lines=2, old=True, start_pk=53)
    make_user("operator", perms=MOVER_PERMS)
    errors: list[dict] = []

    browser.get(live_server.url + "/admin/login/?next=/tiering/")
    browser.find_element(By.NAME, "username").send_keys("operator")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    click_and_wait(browser, browser.find_element(By.CSS_SELECTOR, "input[type=submit]"))
    assert browser.current_url == live_server.url + "/tiering/"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Tiering dashboard"
    errors += console_errors(browser)

    card = browser.find_element(By.ID, "card-ordersorder")
    assert card.find_element(By.CSS_SELECTOR, ".hot-rows").text == "52"
    assert card.find_element(By.CSS_SELECTOR, ".cold-rows").text == "8"
    assert card.find_element(By.CSS_SELECTOR, ".backlog-rows").text == "40"
    assert card.find_element(By.CSS_SELECTOR, "svg.bar rect.cold").get_attribute("width")
    css = browser.execute_script("return getComputedStyle(document.querySelector('.card')).borderRadius")
    assert css == "6px", "the vendored stylesheet was not served"

    click_and_wait(browser, card.find_element(By.LINK_TEXT, "Run now"))
    assert browser.find_element(By.CSS_SELECTOR, "#plan .plan-rows").text == "40"
    assert MigrationRun.objects.count() == 0  # the confirmation page moved nothing
    errors += console_errors(browser)
    click_and_wait(browser, browser.find_element(By.ID, "confirm-run"))

    # The run page of the finished run
    assert "/tiering/runs/" in browser.current_url
    run = MigrationRun.objects.get()
    assert (run.state, run.rows, run.trigger) == (RunState.SUCCEEDED, 40, "dashboard")
    assert browser.find_element(By.CSS_SELECTOR, "#run-summary .rows").text == "40"
    assert "40 rows moved" in browser.find_element(By.CSS_SELECTOR, ".messages").text
    errors += console_errors(browser)

    browser.get(live_server.url + "/tiering/")
    row = browser.find_element(By.CSS_SELECTOR, "#recent-runs tbody tr")
    assert row.find_element(By.CSS_SELECTOR, ".state").text == "succeeded"
    assert row.find_element(By.CSS_SELECTOR, ".rows").text == "40"
    card = browser.find_element(By.ID, "card-ordersorder")
    assert card.find_element(By.CSS_SELECTOR, ".cold-rows").text == "48" == str(count("cold", "orders_order"))
    full_page_screenshot(browser, ARTIFACTS / "dashboard.png")
    errors += console_errors(browser)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
    assert not errors, f"browser console errors: {errors}"
