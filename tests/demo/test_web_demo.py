"""The web demo (demo/app.py) in a real browser: the app runs in a subprocess on 127.0.0.1 and a
free port, and Debian's Chromium (headless, driven by Selenium through Debian's ``chromedriver``;
``.ci/run`` installs both with apt-get) uploads an image, types a vocabulary and reads the page.

Most cases share one app with the explicit tiny random model (``--tiny-random-model``); they
cover a request, the errors, a 1400x900 window (the result in view without scrolling, one
progress bar) and a 500-px-wide screen (the result scrolled into view, the table not cut off).
One case starts ``demo/app.py --model NAME`` with released weights by name, served by a local
HTTP server on 127.0.0.1 (``FROZENSEG_WEIGHTS_URL``) into an empty cache.

The first case saves a screenshot in pytest's temporary folder (its path is in the test's log)
and, when ``FROZENSEG_WEB_DEMO_SCREENSHOT`` names a file, there too (that is how
``docs/images/web_demo.png`` is made); the narrow-screen case saves ``web_demo_500px.png``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from frozenseg.apps.web_demo import EMPTY_VOCABULARY, RANDOM_TINY_MODEL

from ..conftest import REPO_ROOT

pytestmark = pytest.mark.slow

logger = logging.getLogger(__name__)

APP = REPO_ROOT / "demo" / "app.py"
EXAMPLE = REPO_ROOT / "demo" / "examples" / "shapes_sky_grass.jpg"
TINY = "configs/tiny/frozenseg_tiny_convnext.yaml"
# Three queries: the instance task at threshold 0 reports every (query, class) pair, so both
# classes of a two-class vocabulary are in the result whatever the random weights.
APP_OPTS = ["SEED", "0", "MODEL.MASK_FORMER.NUM_OBJECT_QUERIES", "3"]
STARTUP_S = 120
RESULT_S = 60
# ``demo/app.py`` with one more released name, ``tiny_frozenseg`` (the tiny model's config; the
# URL is never used: FROZENSEG_WEIGHTS_URL points downloads at the test's server). Arguments:
# the config, then demo/app.py and its own arguments.
LAUNCHER = """
import runpy, sys
from frozenseg.checkpoint import zoo
zoo.RELEASED_WEIGHTS["tiny_frozenseg"] = zoo.WeightsEntry(
    "tiny_frozenseg", "Tiny FrozenSeg (a test entry)", "model", "tiny_frozenseg.pth",
    ("https://weights.invalid/tiny_frozenseg.pth",), config_file=sys.argv[1])
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _program(name: str) -> str:
    path = shutil.which(name)
    assert path, (f"{name} is not installed; install Debian's Chromium and its driver with "
                  "'apt-get install -y chromium chromium-driver' (.ci/run does).")
    return path


@contextlib.contextmanager
def _serving(command: list[str], log_path: Path, env: dict[str, str]):
    """``(url, process)``: ``command`` (demo/app.py and its arguments) started on a free port and
    answering; stopped afterwards."""
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", **env)
    end = command.index("--opts") if "--opts" in command else len(command)  # --opts takes the rest
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*command[:end], "--port", str(port), *command[end:]], stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=str(REPO_ROOT))
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
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """``(url, process, its temporary folder)``: the demo served by a subprocess with the tiny
    random model (stopped afterwards), its temporary files under a folder of its own (``TMPDIR``)
    and its caches in another (``FROZENSEG_CACHE``)."""
    log_path = tmp_path_factory.mktemp("web_demo_app") / "app.log"
    tmp = tmp_path_factory.mktemp("web_demo_tmp")
    cache = tmp_path_factory.mktemp("web_demo_cache")
    command = [sys.executable, str(APP), "--tiny-random-model", "--opts", *APP_OPTS]
    with _serving(command, log_path, {"TMPDIR": str(tmp), "FROZENSEG_CACHE": str(cache)}) as (url, proc):
        yield url, proc, tmp


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


@contextlib.contextmanager
def _viewport(browser: WebDriver, width: int, height: int):
    """The page seen in a ``width`` x ``height`` window (CSS pixels), as on a laptop or a phone."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    try:
        yield
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


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


def _instance_at_threshold_0(browser: WebDriver, wait: WebDriverWait) -> None:
    next(e for e in browser.find_elements(By.CSS_SELECTOR, "#fs-task label") if e.text == "instance").click()
    threshold = browser.find_element(By.CSS_SELECTOR, "#fs-threshold input[type=number]")
    wait.until(lambda d: threshold.get_attribute("value") == "0.5")  # the instance task's default
    threshold.send_keys(Keys.CONTROL, "a")
    threshold.send_keys("0", Keys.TAB)


def _wait_for_result(browser: WebDriver, wait: WebDriverWait):
    """The overlay image, once the request's message and overlay are shown."""
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#fs-status.fs-notice")
               and d.find_elements(By.CSS_SELECTOR, "#fs-overlay img"))
    overlay = browser.find_element(By.CSS_SELECTOR, "#fs-overlay img")
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", overlay))
    return overlay


def _rect(browser: WebDriver, element) -> dict:
    return browser.execute_script("const r = arguments[0].getBoundingClientRect(); "
                                  "return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}", element)


def _in_view(browser: WebDriver, element) -> bool:
    """The element's top edge is on screen (so the user sees it start without scrolling)."""
    r = _rect(browser, element)
    return 0 <= r["top"] < browser.execute_script("return window.innerHeight") and r["bottom"] > r["top"]


def test_segment_an_uploaded_image(app_url, browser, tmp_path):
    wait = _open(browser, app_url)
    assert browser.title == f"FrozenSeg open-vocabulary segmentation ({RANDOM_TINY_MODEL})"
    assert browser.find_element(By.ID, "fs-random").text.startswith("Random tiny test model: results are meaningless.")
    browser.find_element(By.CSS_SELECTOR, "#fs-image input[type=file]").send_keys(str(EXAMPLE))
    _type_vocabulary(browser, "cat,kitten; dog")
    _instance_at_threshold_0(browser, wait)
    browser.find_element(By.ID, "fs-submit").click()

    overlay = _wait_for_result(browser, wait)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#fs-legend li"))
    status = browser.find_element(By.ID, "fs-status")
    assert "fs-notice" in status.get_attribute("class"), status.text
    assert re.search(r" in \d+\.\d\d s: text classifier \d+\.\d\d s \+ segmentation \d+\.\d\d s "
                     r"\(instance, confidence threshold 0\.00\)\.$", status.text), status.text
    assert browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", overlay) == \
        list(Image.open(EXAMPLE).size) == [640, 480]

    # one unit each: the legend's shares say "% of image", the table's headers name the units
    assert _texts(browser, "#fs-legend .fs-class") == ["cat", "dog"]
    assert all(re.fullmatch(r"\d+\.\d% of image(, \d+ segments)?", t) for t in _texts(browser, "#fs-legend .fs-area"))
    assert _texts(browser, "#fs-segments th") == ["id", "class", "score (0\u20131)", "area (% of image)"]
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
    assert meta["image"] == "shapes_sky_grass.jpg" and meta["task"] == "instance"
    assert meta["classes"] == ["cat,kitten", "dog"]
    area = meta["height"] * meta["width"]
    # the table's scores are the JSON's (0 to 1), its areas the JSON's in % of the image
    assert [(s["id"], s["class"], s["score"], round(100 * s["area"] / area, 2)) for s in meta["segments"]] == table

    shot = tmp_path / "web_demo.png"
    browser.save_screenshot(str(shot))
    logger.info("screenshot: %s", shot)
    if os.environ.get("FROZENSEG_WEB_DEMO_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["FROZENSEG_WEB_DEMO_SCREENSHOT"])


def test_laptop_window_shows_the_result_without_scrolling_and_one_progress_bar(app_url, browser):
    with _viewport(browser, 1400, 900):
        wait = _open(browser, app_url)
        browser.find_element(By.CSS_SELECTOR, "#fs-image input[type=file]").send_keys(str(EXAMPLE))
        _type_vocabulary(browser, "sky; grass; square,box; triangle")
        _instance_at_threshold_0(browser, wait)
        browser.execute_script("window.scrollTo(0, 0)")
        submit = browser.find_element(By.ID, "fs-submit")
        assert _rect(browser, submit)["bottom"] <= 900  # pressed without scrolling
        browser.execute_script("arguments[0].click()", submit)
        # while the request runs, its progress bar is drawn on one output only: the overlay
        progress_on: set[str] = set()
        deadline = time.monotonic() + RESULT_S
        while not browser.find_elements(By.CSS_SELECTOR, "#fs-overlay img") and time.monotonic() < deadline:
            progress_on.update(browser.execute_script(
                "return Array.from(document.querySelectorAll('[data-testid=status-tracker]'))"
                ".filter(e => !e.classList.contains('hide') && e.getBoundingClientRect().height > 0)"
                ".map(e => (e.closest('[id^=fs-]') || {id: '?'}).id)"))
            time.sleep(0.05)
        assert progress_on == {"fs-overlay"}
        overlay = _wait_for_result(browser, wait)
        time.sleep(1)  # the page's scroll-into-view, had it been needed, is done by now
        assert browser.execute_script("return window.scrollY") == 0
        for element in (browser.find_element(By.ID, "fs-status"), overlay):
            r = _rect(browser, element)
            assert 0 <= r["top"] and r["bottom"] <= 900, r  # entirely in the window
        assert _in_view(browser, browser.find_element(By.ID, "fs-segments"))


def test_narrow_screen_scrolls_to_the_result_and_keeps_the_table_readable(app_url, browser, tmp_path):
    with _viewport(browser, 500, 900):
        wait = _open(browser, app_url)
        assert browser.execute_script("return window.innerWidth") == 500
        browser.find_element(By.CSS_SELECTOR, "#fs-image input[type=file]").send_keys(str(EXAMPLE))
        _type_vocabulary(browser, "sky; grass; square,box; triangle")
        _instance_at_threshold_0(browser, wait)
        browser.execute_script("window.scrollTo(0, 0)")
        results = browser.find_element(By.ID, "fs-results")
        assert _rect(browser, results)["top"] > 900  # below the inputs, out of sight
        browser.execute_script("arguments[0].click()", browser.find_element(By.ID, "fs-submit"))
        overlay = _wait_for_result(browser, wait)
        wait.until(lambda d: _in_view(d, d.find_element(By.ID, "fs-status")) and _in_view(d, overlay))
        assert browser.execute_script("return window.scrollY") > 0

        # the results come before the examples, and nothing is wider than the screen
        examples = browser.find_element(By.ID, "fs-examples")
        # (the boxes may touch by a few pixels of border and gap as the page settles)
        assert _rect(browser, results)["top"] < _rect(browser, examples)["top"]
        assert _rect(browser, results)["bottom"] <= _rect(browser, examples)["top"] + 10
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 500
        box = browser.find_element(By.ID, "fs-segments-scroll")
        fit = browser.execute_script(
            "const e = arguments[0]; return {scroll: e.scrollWidth, client: e.clientWidth, "
            "overflow: getComputedStyle(e).overflowX, right: e.getBoundingClientRect().right}", box)
        assert fit["right"] <= 500, fit
        assert fit["scroll"] <= fit["client"] or fit["overflow"] in ("auto", "scroll"), fit
        assert len(browser.find_elements(By.CSS_SELECTOR, "#fs-segments tbody tr")) == 6  # 3 queries x 2 things

        shot = tmp_path / "web_demo_500px.png"
        browser.save_screenshot(str(shot))
        logger.info("screenshot at 500 px: %s", shot)
        assert Image.open(shot).width == 500


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
    assert "text classifier" in browser.find_element(By.ID, "fs-status").text
    # every class of a short vocabulary is in the legend: found, or named in the "Not found" line
    assert set(_texts(browser, "#fs-legend .fs-class") + _texts(browser, "#fs-legend .fs-absent-class")) == {"sky", "grass"}


def test_sigterm_stops_the_server_and_removes_its_results(app, app_url):
    """Runs after the other cases on the shared app: SIGTERM (what the module's teardown and
    service managers send) ends the server like Ctrl-C, and its ``frozenseg_web_*`` results
    folder goes with it."""
    _, proc, tmp = app
    assert [p.name for p in tmp.iterdir() if p.name.startswith("frozenseg_web_")]  # made at start-up
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    assert [p.name for p in tmp.iterdir() if p.name.startswith("frozenseg_web_")] == []


def test_released_weights_by_name(browser, tmp_path):
    """``demo/app.py --model NAME`` end to end: the name's file downloaded from a local server
    (FROZENSEG_WEIGHTS_URL) into an empty cache, the path logged, and the page naming the model
    and its weights, without the random-model notice, segmenting an upload."""
    from frozenseg.engine.setup import load_config
    from frozenseg.modeling.build import build_model

    from ..test_weights_zoo import WeightsServer, saved

    server = WeightsServer()
    try:
        state = build_model(load_config(str(REPO_ROOT / TINY), APP_OPTS)).state_dict()
        server.files["tiny_frozenseg.pth"] = saved(
            {"model": {k: v for k, v in state.items() if not k.startswith(("backbone.clip_model.", "sam."))}})
        cache = tmp_path / "cache"
        command = [sys.executable, "-c", LAUNCHER, TINY, str(APP), "--model", "tiny_frozenseg", "--opts", *APP_OPTS]
        log_path = tmp_path / "app.log"
        env = {"FROZENSEG_WEIGHTS_URL": server.base, "FROZENSEG_CACHE": str(cache), "TMPDIR": str(tmp_path)}
        with _serving(command, log_path, env) as (url, _):
            cached = cache / "weights" / "tiny_frozenseg.pth"
            assert cached.is_file() and [p for p, _ in server.requests] == ["/tiny_frozenseg.pth"]
            log = log_path.read_text()
            assert f"MODEL.WEIGHTS tiny_frozenseg: {cached}" in log  # the name, resolved to the cache
            assert re.search(r"loaded \d+ tensors", log) and "meaningless" not in log

            wait = _open(browser, url)
            assert browser.title == "FrozenSeg open-vocabulary segmentation"
            header = browser.find_element(By.ID, "fs-header").get_attribute("textContent")
            assert "Model: FrozenSeg on cpu, weights tiny_frozenseg." in header
            assert not browser.find_elements(By.ID, "fs-random")
            browser.find_element(By.CSS_SELECTOR, "#fs-image input[type=file]").send_keys(str(EXAMPLE))
            _type_vocabulary(browser, "sky; grass")
            browser.find_element(By.ID, "fs-submit").click()
            _wait_for_result(browser, wait)
            assert "(panoptic, confidence threshold 0.00)." in browser.find_element(By.ID, "fs-status").text
    finally:
        server.close()
