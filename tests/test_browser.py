"""A real headless Chromium drives the app: the chat page, the widget on an intranet page,
hostile seed text, and offline loading. Screenshots go to artifacts/screenshots/.

Needs Debian's chromium and chromium-driver (``make browser``); skipped without them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app_fixtures import (
    EXAMPLES,
    HOSTILE_QUESTION,
    NOT_FOUND_QUESTION,
    SCREENSHOTS,
    SEED_QA,
    LiveServer,
    StaticSite,
    build_engine,
    intranet_page,
    live,
    wait_for,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = [pytest.mark.browser, pytest.mark.model]

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        "needs /usr/bin/chromium and /usr/bin/chromedriver: "
        "apt-get install -y chromium chromium-driver (or `make browser`)",
        allow_module_level=True,
    )

selenium = pytest.importorskip("selenium", reason="needs selenium (pip install selenium)")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402

TIMEOUT = 90  # seconds for one answer on a busy CPU


def _driver(profile: Path, offline: bool = True) -> WebDriver:
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1360,900",
        f"--user-data-dir={profile}",
    ]
    if offline:
        # The network is cut: every host but this machine fails to resolve.
        args.append("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1")
    for arg in args:
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser")


@pytest.fixture(scope="module")
def engine(workdir: Path) -> Any:
    return build_engine(workdir / "app", fast=False)


@pytest.fixture(scope="module")
def intranet(workdir: Path) -> Iterator[StaticSite]:
    with StaticSite(workdir / "intranet") as site:
        yield site


@pytest.fixture(scope="module")
def elsewhere(workdir: Path) -> Iterator[StaticSite]:
    with StaticSite(workdir / "elsewhere") as site:
        yield site


@pytest.fixture(scope="module")
def server(engine: Any, intranet: StaticSite, elsewhere: StaticSite, workdir: Path) -> Iterator[LiveServer]:
    with live(engine, allowed_origins=(intranet.origin,), rate_limit_per_minute=10_000) as s:
        intranet_page(workdir / "intranet", s.url)
        intranet_page(workdir / "elsewhere", s.url)  # the same page, on an origin not listed
        yield s


@pytest.fixture(scope="module")
def browser(server: LiveServer, workdir: Path) -> Iterator[WebDriver]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver = _driver(workdir / "profile")
    try:
        yield driver
    finally:
        driver.quit()  # before the server stops, so no event stream is left open


def _shot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(SCREENSHOTS / name))


def _open_chat(driver: WebDriver, url: str) -> None:
    driver.get(url)
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#qa-input textarea"), TIMEOUT)


def _ask(driver: WebDriver, question: str) -> Any:
    """Type a question, press Enter, return the new assistant message element."""
    before = len(driver.find_elements(By.CSS_SELECTOR, ".qa-answer"))
    box = driver.find_element(By.CSS_SELECTOR, "#qa-input textarea")
    box.send_keys(question)
    box.send_keys(Keys.ENTER)
    wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, ".qa-answer")) > before, TIMEOUT)
    time.sleep(0.5)  # let the sources panel and scrolling settle before a screenshot
    return driver.find_elements(By.CSS_SELECTOR, ".qa-answer")[-1]


def _requested_urls(driver: WebDriver) -> set[str]:
    urls = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.add(message["params"]["request"]["url"])
        elif message["method"] == "Network.webSocketCreated":
            urls.add(message["params"]["url"])
    return urls


def _external(urls: set[str], *allowed: str) -> set[str]:
    local = ("data:", "blob:", "chrome:", "chrome-error:", "about:", *allowed)
    return {u for u in urls if not u.startswith(local)}


def test_chat_answers_with_citation_and_sources_offline(browser: WebDriver, server: LiveServer) -> None:
    browser.get_log("performance")  # start a fresh record
    _open_chat(browser, server.url + "/")
    chat = browser.find_element(By.ID, "qa-chat")
    wait_for(lambda: EXAMPLES[0] in chat.text, 10)  # example questions drawn from the seeds
    assert "Ask the sources" in browser.find_element(By.ID, "qa-header").text
    assert browser.execute_script("return document.fonts.check(\"16px 'IBM Plex Sans'\")")
    _shot(browser, "01_chat_empty.png")

    question, expected = SEED_QA[0]
    answer = _ask(browser, question)
    assert expected in answer.text
    assert answer.find_element(By.CSS_SELECTOR, ".qa-cite").text == "[1]"
    assert "confidence" in answer.find_element(By.CSS_SELECTOR, ".qa-conf").text
    panel = browser.find_element(By.ID, "qa-sources")
    mark = panel.find_element(By.CSS_SELECTOR, "mark.qa-span")
    assert expected in mark.text
    assert "Biden Agrees To Let Ukraine" in panel.find_element(By.CSS_SELECTOR, ".qa-source-title").text
    assert panel.find_element(By.CSS_SELECTOR, ".qa-source-n").text == "[1]"
    _shot(browser, "02_chat_answer.png")

    external = _external(_requested_urls(browser), server.url)
    assert external == set(), f"requests left the machine: {sorted(external)}"


def test_not_found_looks_different(browser: WebDriver, server: LiveServer) -> None:
    _open_chat(browser, server.url + "/")
    answer = _ask(browser, NOT_FOUND_QUESTION)
    assert "qa-notfound" in answer.get_attribute("class")
    assert "Not found in the sources" in answer.text
    assert not answer.find_elements(By.CSS_SELECTOR, ".qa-cite")
    assert "Closest passages" in browser.find_element(By.ID, "qa-sources").text
    _shot(browser, "03_not_found.png")


def test_dark_scheme(browser: WebDriver, server: LiveServer) -> None:
    _open_chat(browser, server.url + "/?__theme=dark")
    answer = _ask(browser, SEED_QA[1][0])
    assert SEED_QA[1][1] in answer.text
    assert browser.execute_script("return document.body.classList.contains('dark')")
    _shot(browser, "09_chat_dark.png")


def test_a_phone_sees_the_question_box_and_never_scrolls_sideways(
    browser: WebDriver, server: LiveServer
) -> None:
    metrics = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        _open_chat(browser, server.url + "/")
        box = browser.find_element(By.CSS_SELECTOR, "#qa-input textarea")
        assert box.rect["y"] + box.rect["height"] <= 844  # no scrolling to find where to ask
        header = browser.find_element(By.CSS_SELECTOR, "#qa-header h1")
        assert header.rect["width"] > 200  # the title is not squeezed into a narrow column
        # a long unbroken token (a URL) in the conversation wraps
        _ask(browser, "Is https://support.acme.example/tickets/new?queue=hardware-and-software-requests up?")
        widths = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], widths
        _shot(browser, "05_phone.png")
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_follow_up_uses_the_conversation_like_the_api(browser: WebDriver, server: LiveServer) -> None:
    _open_chat(browser, server.url + "/")
    first, _ = SEED_QA[1]
    first_answer = _ask(browser, first)
    follow_up = "And who had resisted it?"
    second_answer = _ask(browser, follow_up)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
        a1 = http.post("/api/ask", json={"question": first}).json()
        a2 = http.post(
            "/api/ask",
            json={"question": follow_up, "history": [first, {"role": "assistant", "content": a1["text"]}]},
        ).json()
    flat = " ".join(a1["text"].split())
    assert flat in " ".join(first_answer.text.split())
    if a2["found"]:
        assert " ".join(a2["text"].split()) in " ".join(second_answer.text.split())
    else:
        assert "Not found in the sources" in second_answer.text
    _shot(browser, "04_follow_up.png")


def test_feedback_is_recorded(browser: WebDriver, server: LiveServer) -> None:
    log = Path(server.settings.feedback_log)
    before = log.read_text().count("\n") if log.exists() else 0
    _open_chat(browser, server.url + "/")
    _ask(browser, SEED_QA[0][0])
    browser.find_elements(By.CSS_SELECTOR, "#qa-chat button[aria-label='Like']")[-1].click()
    wait_for(lambda: log.exists() and log.read_text().count("\n") > before, 20)
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["rating"] == "helpful" and entry["channel"] == "ui"
    assert entry["question"] == SEED_QA[0][0] and entry["found"] is True
    # clicked again, the thumb is taken back: logged as withdrawn, not as "not helpful"
    for label, rating in (("Liked", "withdrawn"), ("Dislike", "not_helpful")):
        lines = log.read_text().count("\n")
        browser.find_elements(By.CSS_SELECTOR, f"#qa-chat button[aria-label='{label}']")[-1].click()
        wait_for(lambda n=lines: log.read_text().count("\n") > n, 20)
        assert json.loads(log.read_text().splitlines()[-1])["rating"] == rating
    toast = "Thanks, your feedback was recorded."
    wait_for(lambda: toast in browser.find_element(By.TAG_NAME, "body").text, 10)


def test_a_question_over_the_limit_stays_in_the_box(browser: WebDriver, server: LiveServer) -> None:
    _open_chat(browser, server.url + "/")
    limit = server.settings.max_question_chars
    box = browser.find_element(By.CSS_SELECTOR, "#qa-input textarea")
    question = "why " * (limit // 4) + "really?"
    browser.execute_script(  # typing 2,000 keys one by one would take a while
        "const b = arguments[0]; b.value = arguments[1];"
        "b.dispatchEvent(new Event('input', {bubbles: true}));",
        box, question,
    )  # fmt: skip
    box.send_keys(Keys.ENTER)
    toast = f"the question is too long ({len(question)} characters; the limit is {limit})"
    wait_for(lambda: toast in browser.find_element(By.TAG_NAME, "body").text, 20)
    assert box.get_attribute("value").endswith("why really?")  # kept, to be shortened
    assert not browser.find_elements(By.CSS_SELECTOR, ".qa-answer")


def test_html_in_a_seed_is_shown_as_text(browser: WebDriver, server: LiveServer) -> None:
    _open_chat(browser, server.url + "/")
    answer = _ask(browser, HOSTILE_QUESTION)
    time.sleep(0.5)
    assert browser.execute_script("return window.__pwned === undefined")
    assert "<script>window.__pwned='body'</script><b>teal</b>" in answer.text
    panel = browser.find_element(By.ID, "qa-sources")
    assert "<img src=x onerror=" in panel.text
    for root in ("#qa-chat", "#qa-sources"):
        assert (
            browser.execute_script(
                f"return document.querySelectorAll('{root} script, {root} img[src=\"x\"], {root} b').length"
            )
            == 0
        )
    _shot(browser, "05_hostile_seed_as_text.png")


def test_widget_on_an_allowed_intranet_page(
    browser: WebDriver, server: LiveServer, intranet: StaticSite
) -> None:
    browser.get_log("performance")
    browser.get(f"{intranet.origin}/intranet.html")
    host = wait_for(lambda: browser.find_elements(By.ID, "qa-widget"), 20)[0]
    launcher = host.shadow_root.find_element(By.CSS_SELECTOR, ".qa-w-launcher")
    time.sleep(0.3)
    _shot(browser, "06_intranet_launcher.png")
    launcher.click()
    frame = wait_for(lambda: host.shadow_root.find_elements(By.CSS_SELECTOR, "iframe.qa-w-frame"), 10)[0]
    browser.switch_to.frame(frame)
    try:
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#qa-input textarea"), TIMEOUT)
        # the compact layout is switched on by the page's load script, which gradio runs once
        # the app has rendered: under load that can come just after the question box appears
        assert wait_for(
            lambda: browser.execute_script("return document.body.classList.contains('qa-embed')"), 10
        )
        question, expected = SEED_QA[0]
        answer = _ask(browser, question)
        assert expected in answer.text
        assert answer.find_element(By.CSS_SELECTOR, ".qa-cite").text == "[1]"
    finally:
        browser.switch_to.default_content()
    time.sleep(0.3)
    _shot(browser, "07_intranet_widget_answer.png")
    external = _external(_requested_urls(browser), server.url, intranet.origin)
    assert external == set(), f"requests left the machine: {sorted(external)}"


def test_the_widget_on_a_phone_fills_the_screen_and_its_launcher_steps_aside(
    browser: WebDriver, server: LiveServer, intranet: StaticSite
) -> None:
    metrics = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    try:
        browser.get(f"{intranet.origin}/intranet.html")
        host = wait_for(lambda: browser.find_elements(By.ID, "qa-widget"), 20)[0]
        launcher = host.shadow_root.find_element(By.CSS_SELECTOR, ".qa-w-launcher")
        launcher.click()
        panel = host.shadow_root.find_element(By.CSS_SELECTOR, ".qa-w-panel")
        wait_for(lambda: panel.is_displayed(), 10)
        assert panel.rect["width"] == 390
        assert not launcher.is_displayed()  # it would cover the chat's Ask button
        host.shadow_root.find_element(By.CSS_SELECTOR, ".qa-w-close").click()
        wait_for(lambda: launcher.is_displayed() and not panel.is_displayed(), 10)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_widget_refused_on_an_unlisted_origin(
    browser: WebDriver, server: LiveServer, elsewhere: StaticSite
) -> None:
    browser.get(f"{elsewhere.origin}/intranet.html")
    wait_for(lambda: browser.execute_script("return document.readyState") == "complete", 20)
    time.sleep(1.5)  # the widget's allowlist check has run by now
    assert browser.find_elements(By.ID, "qa-widget") == []  # no launcher
    warnings = [e["message"] for e in browser.get_log("browser")]
    assert any("qa widget: not shown" in w for w in warnings), warnings
    # Framing the chat by hand fails too: the browser enforces CSP frame-ancestors.
    browser.execute_script(
        "const f = document.createElement('iframe'); f.id = 'manual'; f.src = arguments[0];"
        "f.style = 'width:600px;height:400px;border:2px solid red'; document.body.appendChild(f);",
        server.url + "/?embed=1",
    )
    time.sleep(2)
    browser.switch_to.frame(browser.find_element(By.ID, "manual"))
    try:
        assert browser.execute_script("return document.querySelector('gradio-app')") is None
        assert browser.execute_script("return location.href").startswith("chrome-error:")
    finally:
        browser.switch_to.default_content()
    _shot(browser, "08_unlisted_origin_refused.png")


@pytest.fixture(scope="module")
def token_server(engine: Any, intranet: StaticSite, workdir: Path) -> Iterator[LiveServer]:
    with live(engine, allowed_origins=(intranet.origin,), access_token="browser-token") as s:
        yield s


def test_widget_with_an_access_token(token_server: LiveServer, intranet: StaticSite, workdir: Path) -> None:
    folder = intranet_page(workdir / "intranet" / "token", token_server.url, token="browser-token")
    assert (folder / "intranet.html").exists()
    driver = _driver(workdir / "profile-token")
    try:
        driver.get(f"{intranet.origin}/token/intranet.html")
        host = wait_for(lambda: driver.find_elements(By.ID, "qa-widget"), 20)[0]
        host.shadow_root.find_element(By.CSS_SELECTOR, ".qa-w-launcher").click()
        frame = wait_for(lambda: host.shadow_root.find_elements(By.CSS_SELECTOR, "iframe.qa-w-frame"), 10)[0]
        driver.switch_to.frame(frame)
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#qa-input textarea"), TIMEOUT)
        assert "token=" not in driver.execute_script("return location.href")  # dropped after the cookie
        answer = _ask(driver, SEED_QA[0][0])
        assert SEED_QA[0][1] in answer.text
    finally:
        driver.quit()
    assert httpx.get(f"{token_server.url}/").status_code == 401
