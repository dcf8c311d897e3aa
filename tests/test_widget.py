"""The embeddable widget and offline serving, over HTTP (the browser checks are in test_browser.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.app_fixtures import ROOT, LiveServer, build_engine, live

ALLOWED = "http://intranet.example:8080"
OTHER = "http://evil.example"
URL = re.compile(r"""(?:https?:)?//[a-z0-9.-]+(?::\d+)?""", re.IGNORECASE)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_engine(tmp_path_factory.mktemp("widget"), fast=True)


@pytest.fixture(scope="module")
def default_server(engine: Any) -> Iterator[LiveServer]:
    with live(engine) as s:
        yield s


@pytest.fixture(scope="module")
def listed_server(engine: Any) -> Iterator[LiveServer]:
    with live(engine, allowed_origins=(ALLOWED,)) as s:
        yield s


def _code(js: str) -> str:
    return re.sub(r"/\*.*?\*/", "", js, flags=re.DOTALL)


def test_widget_script_is_served_by_the_app_and_loads_nothing_external(default_server: LiveServer) -> None:
    r = httpx.get(f"{default_server.url}/widget.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["x-content-type-options"] == "nosniff"
    code = _code(r.text)
    assert "http:" not in code and "https:" not in code  # every URL is built from the script's own src
    assert "/qa-static/widget.css" in code and "/?embed=1" in code
    css = httpx.get(f"{default_server.url}/qa-static/widget.css")
    assert css.status_code == 200 and "@import" not in css.text and "url(" not in css.text


def test_default_allows_only_the_apps_own_origin(default_server: LiveServer) -> None:
    r = httpx.get(f"{default_server.url}/?embed=1")
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in csp and ALLOWED not in csp
    assert r.headers["x-frame-options"] == "SAMEORIGIN"
    pre = httpx.options(
        f"{default_server.url}/api/health",
        headers={"origin": ALLOWED, "access-control-request-method": "GET"},
    )
    assert "access-control-allow-origin" not in pre.headers


def test_a_listed_origin_may_embed_and_call(listed_server: LiveServer) -> None:
    r = httpx.get(f"{listed_server.url}/?embed=1")
    assert f"frame-ancestors 'self' {ALLOWED}" in r.headers["content-security-policy"]
    assert "x-frame-options" not in r.headers  # it cannot list origins; the CSP does
    health = httpx.get(f"{listed_server.url}/api/health", headers={"origin": ALLOWED})
    assert health.headers["access-control-allow-origin"] == ALLOWED
    pre = httpx.options(
        f"{listed_server.url}/api/ask",
        headers={
            "origin": ALLOWED,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,authorization",
        },
    )
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == ALLOWED


def test_an_unlisted_origin_gets_no_cors_and_no_frame(listed_server: LiveServer) -> None:
    r = httpx.get(f"{listed_server.url}/?embed=1")
    assert OTHER not in r.headers["content-security-policy"]
    health = httpx.get(f"{listed_server.url}/api/health", headers={"origin": OTHER})
    assert "access-control-allow-origin" not in health.headers
    pre = httpx.options(
        f"{listed_server.url}/api/ask",
        headers={"origin": OTHER, "access-control-request-method": "POST"},
    )
    assert pre.status_code == 400 and "access-control-allow-origin" not in pre.headers
    # Gradio's own routes follow the same policy (it defers to the app's CORS middleware).
    cfg = httpx.get(f"{listed_server.url}/config", headers={"origin": OTHER})
    assert "access-control-allow-origin" not in cfg.headers


def test_served_page_names_no_other_host(default_server: LiveServer) -> None:
    page = httpx.get(f"{default_server.url}/")
    assert page.status_code == 200
    own = f"//127.0.0.1:{default_server.port}"
    hosts = {m.lower() for m in URL.findall(page.text)} - {own, f"http:{own}"}
    assert hosts == set(), hosts
    # Everything the page loads (scripts, styles, fonts) is relative to the app.
    for ref in re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", page.text):
        assert not ref.startswith(("http:", "https:", "//")) or ref.startswith(f"http:{own}"), ref
    theme = httpx.get(f"{default_server.url}/theme.css").text
    for ref in re.findall(r"url\(['\"]?([^'\")]+)", theme):
        if ref.startswith("data:"):
            continue
        assert ref.startswith("static/fonts/"), ref
        assert httpx.get(f"{default_server.url}/{ref}").status_code == 200
    assert "fonts.googleapis" not in theme and "@import" not in theme


def test_example_intranet_page_embeds_only_the_snippet() -> None:
    html = (ROOT / "examples" / "intranet.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts == ['<script src="http://127.0.0.1:7860/widget.js" data-title="Ask the news desk" defer>']
    assert not re.search(r"""(?:src|href)=["']https?://(?!127\.0\.0\.1:7860)""", html)


@pytest.mark.parametrize(
    "bad", ["*", "intranet.example", "http://a.example/path", "http://a.example; script-src *"]
)
def test_allowed_origins_must_be_origins(engine: Any, bad: str) -> None:
    from qa.errors import ConfigError
    from qa.serve.server import create_app

    with pytest.raises(ConfigError, match="allowed_origins"):
        create_app(engine, engine.settings.replace(allowed_origins=(bad,)))


def test_allowed_origins_are_normalised() -> None:
    from qa.serve.server import check_origins

    assert check_origins(("HTTPS://Intranet.Example:8443/", " http://b.example ")) == (
        "https://intranet.example:8443",
        "http://b.example",
    )
