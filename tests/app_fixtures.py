"""Helpers for the app tests: seed folders, engines and a live server on a free port.

Not a conftest: test files import what they need, so these fixtures stay local to the
app tests (tests/conftest.py belongs to the engine's suite).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import uvicorn

from qa import QA, Settings
from qa.serve.server import bind, create_app

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"

#: A seed document whose text is hostile HTML: it must always be shown as text.
HOSTILE_NAME = "zz_hostile_memo.txt"
HOSTILE_TEXT = """Visitor badge memo <img src=x onerror="window.__pwned='title'">

Facilities update for all staff.

The visitor badge colour this quarter is <script>window.__pwned='body'</script><b>teal</b> \
& "orange" <img src=x onerror="window.__pwned='img'">.

Badges must be returned to reception at the end of each visit.
"""
HOSTILE_QUESTION = "What is the visitor badge colour this quarter?"

EXAMPLES = [
    "Which missile system is Ukraine expected to deploy?",
    "How much security assistance has the United States provided to Ukraine?",
    "Who encouraged deeper strikes inside Russia?",
]

#: Questions about the real seed article, and a part of the answer each must contain.
SEED_QA = [
    ("How much security assistance has the United States provided to Ukraine?", "56.2 billion"),
    ("Who encouraged deeper strikes inside Russia?", "Zelensky"),
]
NOT_FOUND_QUESTION = "What is the boiling point of mercury?"


def make_seeds(folder: Path, hostile: bool = True) -> Path:
    """A copy of the repository's seeds, plus the hostile memo and example questions."""
    seeds = folder / "seeds"
    shutil.copytree(SEEDS, seeds)
    if hostile:
        (seeds / HOSTILE_NAME).write_text(HOSTILE_TEXT, encoding="utf-8")
    (seeds / ".examples.txt").write_text("\n".join(EXAMPLES) + "\n", encoding="utf-8")
    return seeds


def build_engine(folder: Path, fast: bool) -> QA:
    """The real ``QA`` on a copy of the seeds; ``fast`` swaps in the hashing embedder and
    the model-free reader (no model load: for tests of the shells, not of answers)."""
    seeds = make_seeds(folder)
    settings = Settings(
        seeds_dir=seeds,
        index_dir=folder / "index",
        feedback_log=folder / "var" / "feedback.jsonl",
    )
    if fast:
        settings = settings.replace(model="hash-64", reader="none")
    return QA.build(seeds, folder / "index", settings=settings)


class LiveServer:
    """The real app (create_app) under uvicorn in a background thread, on a free port."""

    def __init__(self, engine: Any, **changes: Any) -> None:
        self.sock = bind("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings: Settings = engine.settings.replace(port=self.port, **changes)
        self.app = create_app(engine, self.settings)
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@contextlib.contextmanager
def live(engine: Any, **changes: Any) -> Iterator[LiveServer]:
    with LiveServer(engine, **changes) as server:
        yield server


class StaticSite:
    """A plain static HTTP server on another port: an "intranet" origin for the widget."""

    def __init__(self, directory: Path) -> None:
        import functools
        import http.server

        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> StaticSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _quiet_handler_base() -> type:
    import http.server

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


_QuietHandler = _quiet_handler_base()


def intranet_page(folder: Path, app_url: str, token: str = "") -> Path:
    """examples/intranet.html with its snippet pointed at ``app_url``, written into ``folder``."""
    html = (ROOT / "examples" / "intranet.html").read_text(encoding="utf-8")
    src = f"{app_url}/widget.js" + (f"?token={token}" if token else "")
    html = html.replace("http://127.0.0.1:7860/widget.js", src)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "intranet.html").write_text(html, encoding="utf-8")
    return folder


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll until ``predicate()`` is truthy; return its value or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)
