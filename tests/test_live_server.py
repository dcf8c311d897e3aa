"""Live updates in the running app: seeds change while clients ask; nothing fails.

The real app (``python app.py``) serves on a free port with the hashing embedder and
the model-free reader (fast). Client threads keep calling /api/ask and /api/search
while a seed document is added, changed and deleted; the app's watcher (or SIGHUP)
swaps in each new index. Zero failed requests; the new text becomes answerable; once
the deletion is live, no request started afterwards cites the deleted document.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from qa.serve.server import bind
from tests.app_fixtures import ROOT, make_seeds, wait_for

pytestmark = pytest.mark.slow  # starts app.py processes: seconds each
NEW_DOC = "penguins.txt"


@dataclass
class App:
    proc: subprocess.Popen[str]
    url: str
    seeds: Path
    stderr: list[str] = field(default_factory=list)


def _free_port() -> int:
    sock = bind("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def start_app(tmp: Path, **env: str) -> App:
    """``python app.py`` on a copy of the seeds; returns once it accepts connections."""
    seeds = make_seeds(tmp)
    port = _free_port()
    environ = {
        **os.environ,
        "QA_MODEL": "hash-64",
        "QA_READER": "none",
        "QA_MIN_CONFIDENCE": "0",
        "QA_RATE_LIMIT_PER_MINUTE": "0",
        "QA_FEEDBACK_LOG": str(tmp / "feedback.jsonl"),
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--seeds", str(seeds),
           "--index", str(tmp / "index")]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=tmp, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    app = App(proc, f"http://127.0.0.1:{port}", seeds)
    assert proc.stdout is not None and proc.stderr is not None
    threading.Thread(target=lambda: app.stderr.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
    line = proc.stdout.readline()
    if line.strip() != f"Running on {app.url}/":
        proc.kill()
        proc.wait()
        raise AssertionError(f"app did not start: {line!r}\n{''.join(app.stderr)}")
    return app


def stop_app(app: App) -> None:
    app.proc.send_signal(signal.SIGINT)
    app.proc.wait(timeout=30)


@dataclass
class Call:
    started: float
    path: str
    status: int  # 0: no response (an exception)
    doc_ids: set[str]
    error: str = ""


class Clients:
    """Threads calling /api/ask and /api/search in a loop, recording every call."""

    QUESTIONS = ("Where do penguins live?", "What do penguins eat?", "Which missile system?")

    def __init__(self, url: str, n: int = 4) -> None:
        self.url = url
        self.calls: list[Call] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(n)]

    def __enter__(self) -> Clients:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def _run(self, i: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            n = i
            while not self._stop.is_set():
                n += 1
                question = self.QUESTIONS[n % len(self.QUESTIONS)]
                path = "/api/ask" if n % 2 else "/api/search"
                body: dict[str, Any] = {"question": question}
                if path == "/api/search":
                    body["k"] = 10
                started = time.monotonic()
                try:
                    r = http.post(path, json=body)
                except httpx.HTTPError as exc:
                    self.calls.append(Call(started, path, 0, set(), repr(exc)))
                    continue
                docs: set[str] = set()
                if r.status_code == 200:
                    data = r.json()
                    docs = {h["chunk"]["doc_id"] for h in data["hits"]}
                    docs |= {c["doc_id"] for c in data.get("citations", [])}
                self.calls.append(Call(started, path, r.status_code, docs, "" if r.is_success else r.text))

    def failures(self) -> list[Call]:
        return [c for c in self.calls if c.status != 200]


def _top(http: httpx.Client, question: str) -> dict[str, Any]:
    hits = http.post("/api/search", json={"question": question, "k": 1}).json()["hits"]
    return hits[0]["chunk"] if hits else {}


def _live_docs(http: httpx.Client) -> set[str]:
    return {d["doc_id"] for d in http.get("/api/info").json()["documents"]}


def _until(predicate: Callable[[], Any]) -> Any:
    return wait_for(predicate, timeout=60, interval=0.1)


@pytest.fixture()
def app(tmp_path: Path) -> Iterator[App]:
    a = start_app(tmp_path, QA_WATCH_INTERVAL="0.2")
    try:
        yield a
    finally:
        stop_app(a)
    assert "Traceback" not in "".join(a.stderr), "".join(a.stderr)


def test_add_change_delete_while_clients_ask(app: App) -> None:
    doc = app.seeds / NEW_DOC
    with Clients(app.url) as clients, httpx.Client(base_url=app.url, timeout=30) as http:
        time.sleep(0.5)
        # Add: the watcher builds and swaps; the new document becomes answerable.
        doc.write_text("Penguins\n\nPenguins live in the Southern Hemisphere.\n", encoding="utf-8")
        _until(lambda: NEW_DOC in _live_docs(http))
        answer = http.post("/api/ask", json={"question": "Where do penguins live?"}).json()
        assert answer["citations"][0]["doc_id"] == NEW_DOC
        assert "Southern Hemisphere" in answer["text"]
        # Change: the new text replaces the old one.
        doc.write_text("Penguins\n\nPenguins eat krill, fish and squid.\n", encoding="utf-8")
        _until(lambda: "krill" in _top(http, "What do penguins eat? krill").get("text", ""))
        assert "Southern Hemisphere" not in _top(http, "penguins Southern Hemisphere").get("text", "")
        # Delete: once the new index is live, no request started later cites it.
        time.sleep(0.5)
        doc.unlink()
        _until(lambda: NEW_DOC not in _live_docs(http))
        swapped_at = time.monotonic()
        time.sleep(1.5)
    failures = clients.failures()
    assert not failures, failures[:3]
    later = [c for c in clients.calls if c.started > swapped_at]
    assert len(later) > 5
    assert not [c for c in later if NEW_DOC in c.doc_ids]
    assert any(NEW_DOC in c.doc_ids for c in clients.calls)  # it was cited while it lived
    assert len(clients.calls) > 50


def test_sighup_rebuilds_without_the_watcher(tmp_path: Path) -> None:
    app = start_app(tmp_path, QA_WATCH_INTERVAL="0")
    try:
        with httpx.Client(base_url=app.url, timeout=30) as http:
            (app.seeds / NEW_DOC).write_text("Penguins\n\nPenguins live in the Southern Hemisphere.\n")
            time.sleep(1.0)
            assert NEW_DOC not in _live_docs(http)  # no watcher: nothing happens by itself
            app.proc.send_signal(signal.SIGHUP)
            _until(lambda: NEW_DOC in _live_docs(http))
            assert _top(http, "penguins Southern Hemisphere")["doc_id"] == NEW_DOC
    finally:
        stop_app(app)
    err = "".join(app.stderr)
    assert "Index built: 1 added, 0 changed, 0 removed" in err and "Traceback" not in err
    assert app.proc.returncode == 0
