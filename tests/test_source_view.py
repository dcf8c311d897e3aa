"""The cited source opened at the span (``GET /source``): over HTTP, and clicked in a real browser.

The engine is the real one with the hashing embedder and the model-free reader (no model load).
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from qa import QA, Settings
from qa.serve import source_view
from qa.serve.render import SOURCE_ANCHOR, quote_hash, source_href
from qa.types import Citation, Document
from tests.app_fixtures import (
    HOSTILE_NAME,
    HOSTILE_QUESTION,
    LiveServer,
    StaticSite,
    intranet_page,
    live,
    make_seeds,
    wait_for,
)
from tests.test_office import write_deck

INTRANET = "http://intranet.example:8080"
EVIL = "http://evil.example"
PARKING_QUESTION = "What is the parking permit fee?"
PARKING_QUOTE = "The parking permit fee is forty euros a month."


def _handbook() -> str:
    """A long document whose answer lies far down, so the page has to scroll to it."""
    filler = [
        f"Section {i}. The archive room on floor {i % 7} keeps the records of project {i}."
        for i in range(1, 160)
    ]
    return "Staff handbook\n\n" + "\n\n".join([*filler, PARKING_QUOTE, "Section 999. The end."]) + "\n"


def _settings(folder: Path, seeds: Path) -> Settings:
    return Settings(
        seeds_dir=seeds,
        index_dir=folder / "index",
        feedback_log=folder / "var" / "feedback.jsonl",
        model="hash-64",
        reader="none",
        min_confidence=0.0,  # every question gets a citation to open
    )


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> QA:
    folder = tmp_path_factory.mktemp("source")
    seeds = make_seeds(folder)
    write_deck(seeds / "deck.pptx")
    (seeds / "handbook.txt").write_text(_handbook(), encoding="utf-8")
    return QA.build(settings=_settings(folder, seeds))


@pytest.fixture(scope="module")
def server(engine: QA) -> Iterator[LiveServer]:
    with live(engine, allowed_origins=(INTRANET,), rate_limit_per_minute=10_000) as s:
        yield s


@pytest.fixture()
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def _cite(http: httpx.Client, question: str) -> Citation:
    r = http.post("/api/ask", json={"question": question})
    assert r.status_code == 200, r.text
    (data,) = r.json()["citations"]
    return Citation(**data)


def _path(c: Citation) -> str:
    return "/" + source_href(c).split("#")[0]


def _shown_text(page: str) -> str:
    """The document text a page shows, unescaped, without its mark."""
    body = page.split('<main class="qa-doc-text">', 1)[1].rsplit("</main>", 1)[0]
    body = body.replace(f'<mark id="{SOURCE_ANCHOR}" class="qa-span">', "", 1).replace("</mark>", "", 1)
    assert "<" not in body  # nothing but the mark is markup: all document text is escaped
    return html.unescape(body)


def _marked(page: str) -> str | None:
    start = f'<mark id="{SOURCE_ANCHOR}" class="qa-span">'
    if start not in page:
        return None
    return html.unescape(page.split(start, 1)[1].split("</mark>", 1)[0])


# -- the page ------------------------------------------------------------------------------


def test_a_citation_links_to_its_document_with_version_and_quote_hash() -> None:
    c = Citation("a b/c&d.txt", "T", "x#0", 3, 7, "quot", "s", 0, 9, "p", 0, 9, 1.0, None, "ab" * 32)
    link = urlsplit(source_href(c))
    assert link.path == "source" and link.fragment == SOURCE_ANCHOR
    query = {k: v[0] for k, v in parse_qs(link.query).items()}
    assert query == {"doc": "a b/c&d.txt", "start": "3", "end": "7", "v": "ab" * 32, "q": quote_hash("quot")}
    assert source_view.parse(query) == source_view.Link("a b/c&d.txt", 3, 7, "ab" * 32, quote_hash("quot"))


def test_the_page_shows_the_whole_document_escaped_with_the_quote_marked(
    http: httpx.Client, engine: QA
) -> None:
    c = _cite(http, HOSTILE_QUESTION)
    assert c.doc_id == HOSTILE_NAME
    r = http.get(_path(c))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    doc = engine.document(c.doc_id)
    assert "<script>" in doc.text and "onerror=" in doc.text  # the document is hostile
    assert _shown_text(r.text) == doc.text  # every character, escaped and unescaped back
    assert _marked(r.text) == c.quote == doc.text[c.start : c.end]
    assert "<script" not in r.text.lower() and "<img" not in r.text.lower() and "<b>" not in r.text
    csp = r.headers["content-security-policy"]
    assert csp.startswith("default-src 'none'; style-src 'self'")
    assert "script-src" not in csp and "unsafe" not in csp  # no script may run on this page at all
    assert f"frame-ancestors 'self' {INTRANET}" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert http.get("/qa-static/source.css").status_code == 200  # the one thing the page loads


def test_the_page_names_the_slide(http: httpx.Client) -> None:
    c = _cite(http, "Where does the new office open in May?")
    assert (c.doc_id, c.location) == ("deck.pptx", "slide 1 notes")
    page = http.get(_path(c)).text
    assert f"deck.pptx · slide 1 notes · characters {c.start}–{c.end}" in page
    assert _marked(page) == c.quote


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("", "'doc' must name a document"),
        ("doc=x.txt&start=abc&end=3", "'start' must be a character offset"),
        ("doc=x.txt&start=-1&end=3", "'start' must be a character offset"),
        ("doc=x.txt&start=5&end=3", "start <= end"),
        ("doc=x.txt&start=5", "come together"),
        ("doc=x.txt&start=1&end=3&v=not-hex", "'v' must be a hexadecimal hash"),
        ("doc=x.txt&start=1&end=99999999999999999999", "'end' must be a character offset"),
    ],
)
def test_a_malformed_link_is_a_400_page(http: httpx.Client, query: str, words: str) -> None:
    r = http.get(f"/source?{query}")
    assert r.status_code == 400 and "Not a link to a source" in r.text and words in html.unescape(r.text)


def test_an_unknown_document_is_a_404_page_that_escapes_its_name(http: httpx.Client) -> None:
    r = http.get("/source", params={"doc": "<b>gone</b>.txt", "start": 0, "end": 1})
    assert r.status_code == 404
    assert "&lt;b&gt;gone&lt;/b&gt;.txt is not in the index any more" in r.text and "<b>" not in r.text


def test_a_link_whose_offsets_do_not_hold_its_quote_highlights_nothing(http: httpx.Client) -> None:
    c = _cite(http, HOSTILE_QUESTION)
    r = http.get(_path(c).replace(f"start={c.start}", f"start={c.start + 1}"))
    assert r.status_code == 200 and _marked(r.text) is None
    assert "do not hold the quote it names" in r.text


def test_a_link_with_the_version_but_no_quote_hash_highlights_nothing(http: httpx.Client, engine: QA) -> None:
    """The version alone does not vouch for the offsets: a link without q= marks nothing and
    says why, and still shows the document."""
    c = _cite(http, HOSTILE_QUESTION)
    path = _path(c)
    assert path.endswith(f"&q={quote_hash(c.quote)}") and f"&v={c.doc_sha256}" in path
    r = http.get(path.split("&q=")[0])
    assert r.status_code == 200 and _marked(r.text) is None
    assert "names no quote" in r.text
    assert _shown_text(r.text) == engine.document(c.doc_id).text


def test_a_crafted_link_buys_little_search(monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[int] = []

    def counting(quote: str) -> str:
        hashed.append(len(quote))
        return quote_hash(quote)

    monkeypatch.setattr(source_view, "quote_hash", counting)
    text = "x" * 1_000_000
    for start, end in ((500_000, 500_080), (25_000, 525_000), (0, 1_000_000), (10, 2_000_000)):
        hashed.clear()
        assert source_view._find_moved(text, start, end, "deadbeef0000") is None
        # the characters hashed are bounded by the budget, whatever length the link names
        assert sum(hashed) <= source_view.MOVED_SEARCH_BUDGET + (end - start)
    hashed.clear()
    moved = "y" * 499_990 + "The badge colour is teal." + "y" * 500_000
    start = 500_000  # cited there, now 10 characters earlier
    found = source_view._find_moved(moved, start, start + 25, quote_hash("The badge colour is teal."))
    assert found == 499_990 and len(hashed) == 20  # the nearest offsets are tried first


def test_resolve_marks_only_a_quote_its_hash_names() -> None:
    text = "Memo\n\nThe badge colour is teal.\n"
    doc = Document("memo.txt", "Memo", text, "ab" * 32)
    start, end = text.index("The"), text.index("teal") + 4
    quote = quote_hash(text[start:end])
    assert source_view.resolve(source_view.Link("memo.txt", start, end, doc.sha256, quote), doc) == (
        source_view.View(start, end)
    )
    unnamed = source_view.resolve(source_view.Link("memo.txt", start, end, doc.sha256, ""), doc)
    assert (unnamed.start, unnamed.end) == (None, None) and "names no quote" in unnamed.notice


def test_source_pages_count_against_the_rate_limit(engine: QA) -> None:
    """Each page renders a whole document: a client cannot fetch them without limit."""
    doc = engine.document("handbook.txt")
    path = f"/source?doc=handbook.txt&start=0&end=5&v={doc.sha256}&q={quote_hash(doc.text[:5])}"
    with live(engine, rate_limit_per_minute=3) as s, httpx.Client(base_url=s.url, timeout=60) as http:
        codes = [http.get(path).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        assert http.get("/api/health").status_code == 200  # still never limited


# -- access rules --------------------------------------------------------------------------


def test_the_token_guards_the_page(engine: QA) -> None:
    token = "source-token"
    c = Citation(HOSTILE_NAME, "", "", 0, 5, engine.document(HOSTILE_NAME).text[:5], "", 0, 0, "", 0, 0, 0.0)
    path = _path(c)
    with live(engine, access_token=token) as s, httpx.Client(base_url=s.url) as http:
        assert http.get(path).status_code == 401
        assert http.get(path, headers={"authorization": "Bearer wrong"}).status_code == 401
        ok = http.get(path, headers={"authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and _marked(ok.text) == c.quote
        # ?token= from a browser: a cookie, and the same address without the token
        r = http.get(f"{path}&token={token}", headers={"accept": "text/html"})
        assert r.status_code == 303
        assert r.headers["location"] == path and token not in r.headers["location"]
        assert http.get(path).status_code == 200  # the cookie now stands in for the token


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"origin": EVIL}, 403),
        ({"origin": "null"}, 403),
        ({"origin": INTRANET}, 200),
        ({"sec-fetch-site": "cross-site", "referer": f"{EVIL}/wiki/page"}, 403),
        ({"sec-fetch-site": "cross-site"}, 403),  # crossed sites without naming its page
        ({"sec-fetch-site": "cross-site", "referer": f"{INTRANET}/news.html"}, 200),
        ({"sec-fetch-site": "same-origin"}, 200),
        ({"sec-fetch-site": "none"}, 200),  # typed into the address bar
        ({}, 200),
    ],
)
def test_the_page_follows_the_origin_allowlist(
    http: httpx.Client, headers: dict[str, str], status: int
) -> None:
    c = _cite(http, HOSTILE_QUESTION)
    r = http.get(_path(c), headers=headers)
    assert r.status_code == status
    if status == 403:
        assert "not on the app's allowed origins" in html.unescape(r.text) and _marked(r.text) is None
    elif "origin" in headers:
        assert r.headers["access-control-allow-origin"] == INTRANET


def test_the_apps_own_origin_may_open_it(http: httpx.Client, server: LiveServer) -> None:
    c = _cite(http, HOSTILE_QUESTION)
    assert http.get(_path(c), headers={"origin": server.url}).status_code == 200


# -- changed and deleted documents ------------------------------------------------------


@pytest.fixture()
def small(tmp_path: Path) -> Iterator[tuple[LiveServer, Path]]:
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "memo.txt").write_text("Memo\n\nThe badge colour is teal.\n\nReturn badges.\n", encoding="utf-8")
    (seeds / "other.txt").write_text("Other\n\nThe canteen opens at noon.\n", encoding="utf-8")
    engine = QA.build(settings=_settings(tmp_path, seeds))
    with live(engine, rate_limit_per_minute=10_000) as s:
        yield s, seeds


def _reload(http: httpx.Client) -> None:
    r = http.post("/api/reload")
    assert r.status_code == 200 and r.json()["swapped"], r.text


def test_a_change_after_the_quote_keeps_the_highlight_and_says_so(small: tuple[LiveServer, Path]) -> None:
    server, seeds = small
    with httpx.Client(base_url=server.url, timeout=60) as http:
        c = _cite(http, "What is the badge colour?")
        assert c.quote == "The badge colour is teal."
        with (seeds / "memo.txt").open("a", encoding="utf-8") as f:
            f.write("A new line at the end.\n")
        _reload(http)
        page = http.get(_path(c)).text
    assert _marked(page) == c.quote
    assert "has changed since the answer was given; the quoted text is still at the same place" in page
    assert "A new line at the end." in _shown_text(page)  # the current text, not the cited one


def test_a_change_that_moves_the_quote_finds_it_again_and_says_so(small: tuple[LiveServer, Path]) -> None:
    server, seeds = small
    with httpx.Client(base_url=server.url, timeout=60) as http:
        c = _cite(http, "What is the badge colour?")
        text = "Memo\n\nNew first paragraph.\n\nThe badge colour is teal.\n\nReturn badges.\n"
        (seeds / "memo.txt").write_text(text, encoding="utf-8")
        _reload(http)
        page = http.get(_path(c)).text
        moved = text.index(c.quote)
        assert _marked(page) == c.quote  # the quote itself, at its new place
        assert f"the quoted text moved to characters {moved}–{moved + len(c.quote)}" in page
        assert "New first paragraph." in _shown_text(page)
        # edited away, it is not found: nothing is marked (not the characters at the old offsets)
        (seeds / "memo.txt").write_text(text.replace("teal", "green"), encoding="utf-8")
        _reload(http)
        page = http.get(_path(c)).text
    assert _marked(page) is None
    assert f"the quoted text is no longer at characters {c.start}–{c.end}" in page


def test_a_deleted_document_says_so(small: tuple[LiveServer, Path]) -> None:
    server, seeds = small
    with httpx.Client(base_url=server.url, timeout=60) as http:
        c = _cite(http, "What is the badge colour?")
        (seeds / "memo.txt").unlink()
        _reload(http)
        r = http.get(_path(c))
    assert r.status_code == 404
    assert "memo.txt is not in the index any more: it was deleted or renamed" in r.text


# -- in a real browser --------------------------------------------------------------------


@pytest.fixture(scope="module")
def intranet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("intranet")


@pytest.fixture(scope="module")
def intranet(intranet_dir: Path) -> Iterator[StaticSite]:
    with StaticSite(intranet_dir) as site:
        yield site


@pytest.fixture(scope="module")
def browser_server(engine: QA, intranet: StaticSite, intranet_dir: Path) -> Iterator[LiveServer]:
    with live(engine, allowed_origins=(intranet.origin,), rate_limit_per_minute=10_000) as s:
        intranet_page(intranet_dir, s.url)
        yield s


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory, browser_server: LiveServer) -> Iterator[Any]:
    from tests.test_browser import _driver  # skips when Chromium or selenium is missing

    d = _driver(tmp_path_factory.mktemp("profile"))
    try:
        yield d
    finally:
        d.quit()


def _open_in_new_tab(d: Any, link: Any) -> dict[str, Any]:
    """Click a citation link; in the tab it opens, what the page marks and shows."""
    home = d.current_window_handle
    before = set(d.window_handles)
    link.click()
    (tab,) = wait_for(lambda: set(d.window_handles) - before, 20)
    d.switch_to.window(tab)
    try:
        wait_for(lambda: d.execute_script("return document.readyState") == "complete", 20)
        time.sleep(0.3)  # the scroll to the fragment
        return d.execute_script(
            "const m = document.querySelector('mark');"
            "const r = m && m.getBoundingClientRect();"
            "return {url: location.href, marked: m && m.textContent, id: m && m.id,"
            " target: document.querySelector(':target') && document.querySelector(':target').id,"
            " visible: !!r && r.top >= 0 && r.bottom <= window.innerHeight, scrolled: window.scrollY,"
            " pwned: window.__pwned === undefined ? null : window.__pwned,"
            " scripts: document.scripts.length};"
        )
    finally:
        d.close()
        d.switch_to.window(home)


@pytest.mark.browser
def test_clicking_a_citation_in_the_chat_opens_the_document_at_the_quote(
    driver: Any, browser_server: LiveServer
) -> None:
    from selenium.webdriver.common.by import By

    from tests.test_browser import _ask, _open_chat

    _open_chat(driver, browser_server.url + "/")
    answer = _ask(driver, PARKING_QUESTION)
    panel = driver.find_element(By.ID, "qa-sources")
    quote = driver.execute_script("return document.querySelector('#qa-sources mark.qa-span').textContent")
    assert quote == PARKING_QUOTE
    for link in (
        panel.find_element(By.CSS_SELECTOR, "a.qa-source-open"),
        answer.find_element(By.CSS_SELECTOR, ".qa-cite a"),
    ):
        seen = _open_in_new_tab(driver, link)
        assert seen["url"].startswith(f"{browser_server.url}/source?doc=handbook.txt&")
        assert seen["marked"] == quote and seen["id"] == seen["target"] == SOURCE_ANCHOR
        assert seen["visible"] and seen["scrolled"] > 0  # scrolled down to the quote, no script
        assert seen["scripts"] == 0

    # hostile document text stays text on the page too
    _open_chat(driver, browser_server.url + "/")  # a new conversation: not a follow-up
    _ask(driver, HOSTILE_QUESTION)
    panel_quote = "return document.querySelector('#qa-sources mark.qa-span').textContent"
    wait_for(lambda: "visitor badge" in driver.execute_script(panel_quote), 20)  # the panel follows
    seen = _open_in_new_tab(driver, driver.find_element(By.CSS_SELECTOR, "#qa-sources a.qa-source-open"))
    assert "<script>window.__pwned='body'</script>" in seen["marked"]
    assert seen["pwned"] is None and seen["scripts"] == 0


@pytest.mark.browser
def test_clicking_a_citation_in_the_widget_opens_the_document_at_the_quote(
    driver: Any, browser_server: LiveServer, intranet: StaticSite
) -> None:
    from selenium.webdriver.common.by import By

    from tests.test_browser import _ask

    driver.get(f"{intranet.origin}/intranet.html")
    host = wait_for(lambda: driver.find_elements(By.ID, "qa-widget"), 20)[0]
    host.shadow_root.find_element(By.CSS_SELECTOR, ".qa-w-launcher").click()
    frame = wait_for(lambda: host.shadow_root.find_elements(By.CSS_SELECTOR, "iframe.qa-w-frame"), 10)[0]
    driver.switch_to.frame(frame)
    try:
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#qa-input textarea"), 90)
        answer = _ask(driver, PARKING_QUESTION)
        link = answer.find_element(By.CSS_SELECTOR, ".qa-cite a")
        quote = driver.execute_script("return document.querySelector('#qa-sources mark.qa-span').textContent")
        seen = _open_in_new_tab(driver, link)
    finally:
        driver.switch_to.default_content()
    assert quote == PARKING_QUOTE
    assert seen["url"].startswith(f"{browser_server.url}/source?")  # the app's page, not the intranet's
    assert seen["marked"] == quote and seen["target"] == SOURCE_ANCHOR and seen["visible"]
