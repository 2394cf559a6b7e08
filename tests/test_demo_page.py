"""The demo page in headless Chromium against a real TorchServe, through serving/demo_page.py."""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
from serving import loopback  # noqa: E402
from serving.demo_page import DemoPage  # noqa: E402

from tests.requirements import need, need_program  # noqa: E402

# CI installs these (.ci/run); there a missing one fails instead of skipping.
CHROMIUM, CHROMEDRIVER = need_program("chromium", "chromedriver", install="apt-get install chromium chromium-driver")
webdriver = need("selenium.webdriver", "scripts/setup.sh --dev (requirements-dev.txt)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def page(registered):
    page = DemoPage(registered, port=0).start()
    yield page
    page.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1000,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def fill_and_submit(browser, page: DemoPage, key: str, title: str, description: str, top_k: str = "3") -> str:
    """Type into the page as a person would; return the id of what appeared (result or error)."""
    browser.get(page.url)
    for field, value in (("key", key), ("title", title), ("description", description)):
        element = browser.find_element(By.ID, field)
        element.clear()
        element.send_keys(value)
    Select(browser.find_element(By.ID, "top_k")).select_by_visible_text(top_k)
    browser.find_element(By.ID, "predict").click()
    WebDriverWait(browser, 60).until(
        ec.any_of(ec.visibility_of_element_located((By.ID, "result")),
                  ec.visibility_of_element_located((By.ID, "error"))))
    return "result" if browser.find_element(By.ID, "result").is_displayed() else "error"


def test_page_shows_the_served_prediction(browser, page: DemoPage, registered) -> None:
    title, description = "Saxophone trio at the cellar", "Swing standards and a late jam session"
    shown = fill_and_submit(browser, page, registered.key("inference"), title, description, top_k="2")
    assert shown == "result", browser.find_element(By.ID, "error").text
    code, body = registered.call("inference", "POST", "/predictions/events",
                                 json.dumps({"title": title, "description": description, "top_k": 2}).encode(),
                                 {"Content-Type": "application/json"})
    assert code == 200
    answer = json.loads(body)
    guess = "Best guess: " if answer["abstain"] else ""  # an abstention: a notice, the paths still shown
    assert browser.find_element(By.ID, "path").text == guess + " › ".join(answer["path"])
    assert browser.find_element(By.ID, "abstain").is_displayed() is answer["abstain"]
    if answer["abstain"]:
        assert f"scope score {answer['scope_score']:.3f}" in browser.find_element(By.ID, "abstain").text
    assert browser.find_element(By.ID, "path-score").text == f"{100 * answer['path_score']:.1f}%"
    assert browser.find_element(By.ID, "taxonomy").text == answer["taxonomy"]["label"]
    assert browser.find_element(By.ID, "subtaxonomy").text == answer["subtaxonomy"]["label"]
    rows = browser.find_elements(By.CSS_SELECTOR, "#alternatives tbody tr")
    assert [[c.text for c in r.find_elements(By.TAG_NAME, "td")][1:3] for r in rows] == \
        [[alt["taxonomy"], alt["subtaxonomy"]] for alt in answer["top_k"]]
    if os.environ.get("DEMO_PAGE_SCREENSHOT"):  # to look at the page: DEMO_PAGE_SCREENSHOT=page.png
        browser.save_screenshot(os.environ["DEMO_PAGE_SCREENSHOT"])


def test_page_explains_a_refused_key_and_a_bad_request(browser, page: DemoPage, registered) -> None:
    assert fill_and_submit(browser, page, "not-the-key", "jazz", "") == "error"
    assert "key was refused" in browser.find_element(By.ID, "error").text
    assert fill_and_submit(browser, page, registered.key("inference"), "", "   ") == "error"
    text = browser.find_element(By.ID, "error").text
    assert text.startswith("400:") and "title" in text  # the handler's own message, shown as is
    assert not browser.find_element(By.ID, "result").is_displayed()


def test_page_server_forwards_only_predictions(page: DemoPage, registered) -> None:
    def call(method: str, path: str, data: bytes | None = None, headers: dict | None = None) -> int:
        request = urllib.request.Request(page.url.rstrip("/") + path, data=data, method=method, headers=headers or {})
        try:
            with loopback.urlopen(request, timeout=30) as response:
                assert "script-src 'self'" in response.headers["Content-Security-Policy"]
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert call("GET", "/") == 200 and call("GET", "/app.js") == 200
    assert call("GET", "/../config.properties") == 404
    assert call("POST", "/models?url=x.mar", b"") == 404  # nothing reaches the management API
    assert call("POST", "/predictions/../models", b"{}") == 404
    # Refused from the declared length, before a byte of the body is read.
    host, port = page.httpd.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    connection.putrequest("POST", "/predictions/events")
    connection.putheader("Content-Length", str(2_000_000))
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()
    # Forwarded, but without a key TorchServe refuses it.
    assert call("POST", "/predictions/events", b'{"title": "run"}', {"Content-Type": "application/json"}) == 400
