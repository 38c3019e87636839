"""The web demo (demo/app.py) in a real browser: the app runs in a subprocess on 127.0.0.1 and a
free port with the tiny random model, and Debian's Chromium (headless, driven by Selenium through
Debian's ``chromedriver``; ``.ci/run`` installs both with apt-get) uploads an image, types a
vocabulary and reads the page.

The first case saves a screenshot in pytest's temporary folder (its path is in the test's log)
and, when ``FROZENSEG_WEB_DEMO_SCREENSHOT`` names a file, there too (that is how
``docs/images/web_demo.png`` is made)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from frozenseg.apps.web_demo import EMPTY_VOCABULARY

from ..conftest import REPO_ROOT

pytestmark = pytest.mark.slow

logger = logging.getLogger(__name__)

APP = REPO_ROOT / "demo" / "app.py"
EXAMPLE = REPO_ROOT / "demo" / "examples" / "shapes_sky_grass.png"
# Three queries: the instance task at threshold 0 reports every (query, class) pair, so both
# classes of a two-class vocabulary are in the result whatever the random weights.
APP_OPTS = ["SEED", "0", "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "3"]
STARTUP_S = 120
RESULT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _program(name: str) -> str:
    path = shutil.which(name)
    assert path, (f"{name} is not installed; install Debian's Chromium and its driver with "
                  "'apt-get install -y chromium chromium-driver' (.ci/run does).")
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """``(url, process, its temporary folder)``: the demo served by a subprocess with the tiny
    model (stopped afterwards), its temporary files under a folder of its own (``TMPDIR``)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("web_demo_app") / "app.log"
    tmp = tmp_path_factory.mktemp("web_demo_tmp")
    env = dict(os.environ, OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
               TMPDIR=str(tmp))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, str(APP), "--port", str(port), "--opts", *APP_OPTS],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(REPO_ROOT))
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert proc.poll() is None, f"the app exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the app did not start in {STARTUP_S} s:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.5)
        yield url, proc, tmp
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def app_url(app):
    """The demo's URL."""
    return app[0]


@pytest.fixture(scope="module")
def browser():
    options = Options()
    options.binary_location = _program("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1250"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(_program("chromedriver")), options=options)
    yield driver
    driver.quit()


def _open(browser: WebDriver, url: str) -> WebDriverWait:
    browser.get(url)
    wait = WebDriverWait(browser, RESULT_S)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#fs-image input[type=file]"))
    return wait


def _type_vocabulary(browser: WebDriver, text: str) -> None:
    box = browser.find_element(By.CSS_SELECTOR, "#fs-vocabulary textarea")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    if text:
        box.send_keys(text)


def _texts(browser: WebDriver, selector: str) -> list[str]:
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, selector)]


def test_segment_an_uploaded_image(app_url, browser, tmp_path):
    wait = _open(browser, app_url)
    browser.find_element(By.CSS_SELECTOR, "#fs-image input[type=file]").send_keys(str(EXAMPLE))
    _type_vocabulary(browser, "cat,kitten; dog")
    next(e for e in browser.find_elements(By.CSS_SELECTOR, "#fs-task label") if e.text == "instance").click()
    threshold = browser.find_element(By.CSS_SELECTOR, "#fs-threshold input[type=number]")
    wait.until(lambda d: threshold.get_attribute("value") == "0.5")  # the instance task's default
    threshold.send_keys(Keys.CONTROL, "a")
    threshold.send_keys("0", Keys.TAB)
    browser.find_element(By.ID, "fs-submit").click()

    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#fs-legend li") and d.find_elements(By.ID, "fs-status"))
    status = browser.find_element(By.ID, "fs-status")
    assert "fs-notice" in status.get_attribute("class"), status.text
    assert "(instance, confidence threshold 0.00)" in status.text
    overlay = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#fs-overlay img"))
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", overlay))
    assert browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", overlay) == list(Image.open(EXAMPLE).size)

    assert _texts(browser, "#fs-legend .fs-class") == ["cat", "dog"]
    rows = [r.find_elements(By.TAG_NAME, "td") for r in browser.find_elements(By.CSS_SELECTOR, "#fs-segments tbody tr")]
    table = [(int(c[0].text), c[1].text, float(c[2].text), float(c[3].text)) for c in rows]
    assert {cls for _, cls, _, _ in table} == {"cat", "dog"}
    assert len(table) == 6  # 3 queries x 2 classes

    links = {a.get_attribute("download"): a.get_attribute("href")
             for a in browser.find_elements(By.CSS_SELECTOR, "#fs-downloads a[download]")}
    assert sorted(links) == ["shapes_sky_grass_ids.png", "shapes_sky_grass_segments.json"]
    json_url = links["shapes_sky_grass_segments.json"]
    with urllib.request.urlopen(json_url, timeout=10) as r:
        meta = json.loads(r.read())
    assert meta["image"] == "shapes_sky_grass.png" and meta["task"] == "instance"
    assert meta["classes"] == ["cat,kitten", "dog"]
    area = meta["height"] * meta["width"]
    assert [(s["id"], s["class"], s["score"], round(100 * s["area"] / area, 2)) for s in meta["segments"]] == table

    shot = tmp_path / "web_demo.png"
    browser.save_screenshot(str(shot))
    logger.info("screenshot: %s", shot)
    if os.environ.get("FROZENSEG_WEB_DEMO_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["FROZENSEG_WEB_DEMO_SCREENSHOT"])


def test_errors_are_messages_and_the_server_keeps_serving(app_url, browser, tmp_path):
    wait = _open(browser, app_url)
    upload = browser.find_element(By.CSS_SELECTOR, "#fs-image input[type=file]")
    upload.send_keys(str(EXAMPLE))
    _type_vocabulary(browser, "")
    browser.find_element(By.ID, "fs-submit").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#fs-status.fs-error"))
    assert browser.find_element(By.ID, "fs-status").text == EMPTY_VOCABULARY
    assert not browser.find_elements(By.CSS_SELECTOR, "#fs-overlay img")

    # a file that is not an image: a message naming it, then an image works again
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    browser.find_element(By.CSS_SELECTOR, "#fs-image button[aria-label='Clear']").click()
    browser.find_element(By.CSS_SELECTOR, "#fs-image input[type=file]").send_keys(str(text_file))
    _type_vocabulary(browser, "sky; grass")
    browser.find_element(By.ID, "fs-submit").click()
    wait.until(lambda d: "notes.txt" in (d.find_elements(By.ID, "fs-status") or [None])[0].text
               if d.find_elements(By.ID, "fs-status") else False)
    status = browser.find_element(By.ID, "fs-status")
    assert "fs-error" in status.get_attribute("class") and "Traceback" not in status.text
    assert "/tmp" not in status.text  # the file's own name, not the server's path

    browser.find_element(By.CSS_SELECTOR, "#fs-image button[aria-label='Clear']").click()
    browser.find_element(By.CSS_SELECTOR, "#fs-image input[type=file]").send_keys(str(EXAMPLE))
    browser.find_element(By.ID, "fs-submit").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#fs-status.fs-notice")
               and d.find_elements(By.CSS_SELECTOR, "#fs-overlay img"))
    assert set(_texts(browser, "#fs-legend .fs-class")) == {"sky", "grass"}


def test_sigterm_stops_the_server_and_removes_its_results(app, app_url):
    """Runs last in this module: SIGTERM (what the module's teardown and service managers send)
    ends the server like Ctrl-C, and its ``frozenseg_web_*`` results folder goes with it."""
    _, proc, tmp = app
    assert [p.name for p in tmp.iterdir() if p.name.startswith("frozenseg_web_")]  # made at start-up
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    assert [p.name for p in tmp.iterdir() if p.name.startswith("frozenseg_web_")] == []
