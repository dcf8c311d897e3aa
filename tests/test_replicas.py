"""Replicas over one index: several read-only servers follow the generations one builder publishes.

The end-to-end test runs two real ``qa serve --read-only`` processes on one index folder while
clients keep asking both, and a third process rebuilds the index: both switch to the new
generation by themselves, and no request fails.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from qa.config import Settings
from qa.errors import IndexMissingError
from qa.pipeline import QA
from qa.serve.server import Reloader, bind, serve
from qa.serve.watch import GenerationFollower
from qa.store import files as store
from qa.store import index as index_mod
from qa.store.embedding import HashEmbedder
from tests.app_fixtures import wait_for

NEW_DOC = "penguins.txt"
NEW_TEXT = "Penguins\n\nPenguins live in the Southern Hemisphere, mostly in Antarctica.\n"
QUESTION = "Where do penguins live?"


def _rebuild(seeds: Path, settings: Settings) -> str:
    """What another process does: build the index from ``seeds`` (here, in this one)."""
    from qa.ingest.sources import read_folder

    docs = read_folder(seeds).documents
    return index_mod.build(docs, settings.index_dir, HashEmbedder(64), settings).generation


def test_follower_swaps_in_a_generation_published_elsewhere(
    sample_seeds: Path, fake_settings: Settings
) -> None:
    replica = QA.build(sample_seeds, settings=fake_settings.replace(read_only=True))
    swaps: list[str] = []
    follower = GenerationFollower(
        replica, interval=0.05, on_swap=lambda: swaps.append(replica.data.path.name)
    )
    assert not follower.check()  # nothing new
    (sample_seeds / NEW_DOC).write_text(NEW_TEXT)
    new = _rebuild(sample_seeds, fake_settings)
    assert follower.check()
    assert swaps == [new] and replica.data.path.name == new
    assert replica.ask(QUESTION).citations[0].doc_id == NEW_DOC


def test_follower_keeps_serving_when_a_new_generation_is_damaged(
    sample_seeds: Path, fake_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    replica = QA.build(sample_seeds, settings=fake_settings)
    served = replica.data.path
    (sample_seeds / NEW_DOC).write_text(NEW_TEXT)
    new = _rebuild(sample_seeds, fake_settings)
    (fake_settings.index_dir / new / "chunks.jsonl").write_text("damaged\n")
    follower = GenerationFollower(replica, interval=0.05)
    with caplog.at_level(logging.WARNING):
        assert not follower.check()
        assert not follower.check()  # tried once, warned once
    assert replica.data.path == served
    assert replica.ask("What makes the dough rise?").found
    warnings = [r.getMessage() for r in caplog.records if "not served" in r.getMessage()]
    assert len(warnings) == 1 and "chunks.jsonl" in warnings[0]


def test_a_replica_reload_builds_nothing(sample_seeds: Path, fake_settings: Settings) -> None:
    replica = QA.build(sample_seeds, settings=fake_settings.replace(read_only=True))
    (sample_seeds / NEW_DOC).write_text(NEW_TEXT)  # a replica's seeds are not its business
    before = sorted(p.name for p in fake_settings.index_dir.iterdir())
    result = Reloader(replica)()
    assert result["swapped"] is False and result["up_to_date"]
    assert sorted(p.name for p in fake_settings.index_dir.iterdir()) == before
    new = _rebuild(sample_seeds, fake_settings)
    result = Reloader(replica)()
    assert result["swapped"] is True and result["generation"] == new
    assert result["documents"] == len(replica.data.documents)


def test_a_replica_without_an_index_says_to_build_one(tmp_path: Path) -> None:
    port = bind("127.0.0.1", 0)
    free = int(port.getsockname()[1])
    port.close()
    settings = Settings(index_dir=tmp_path / "index", model="hash-64", read_only=True, port=free)
    with pytest.raises(IndexMissingError, match="qa build"):
        serve(settings)
    assert not (tmp_path / "index").exists()  # a replica never creates or builds the index


def _start_replica(index: Path, tmp: Path, name: str) -> tuple[subprocess.Popen[str], str]:
    sock = bind("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    sock.close()
    env = {
        **os.environ, "QA_MODEL": "hash-64", "QA_READER": "none", "QA_MIN_CONFIDENCE": "0",
        "QA_RATE_LIMIT_PER_MINUTE": "0", "QA_WATCH_INTERVAL": "0.2", "PYTHONUNBUFFERED": "1",
        "QA_FEEDBACK_LOG": str(tmp / f"{name}-feedback.jsonl"),
    }  # fmt: skip
    cmd = [sys.executable, "-m", "qa", "serve", "--read-only", "--index", str(index), "--port", str(port),
           "--seeds", str(tmp / "no-seeds")]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != f"Running on {url}/":
        proc.kill()
        raise AssertionError(f"replica did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, url


@pytest.mark.slow
def test_two_replicas_follow_a_rebuild_by_a_third_process_with_zero_errors(
    sample_seeds: Path, fake_settings: Settings, tmp_path: Path
) -> None:
    index = fake_settings.index_dir
    QA.build(sample_seeds, settings=fake_settings)
    first = store.current_generation(index).name
    replicas = [_start_replica(index, tmp_path, f"r{i}") for i in range(2)]
    urls = [url for _, url in replicas]
    stop = threading.Event()
    results: list[tuple[str, int, Any]] = []  # (url, status, cited doc or error)

    def client(url: str) -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                try:
                    r = http.post(f"{url}/api/ask", json={"question": QUESTION})
                    ok = r.status_code == 200
                    results.append(
                        (url, r.status_code, [c["doc_id"] for c in r.json()["citations"]] if ok else r.text)
                    )
                    r = http.post(f"{url}/api/search", json={"question": "penguins bread Nile", "k": 3})
                    results.append((url, r.status_code, None))
                except Exception as exc:  # a refused or dropped connection is a failed request too
                    results.append((url, -1, repr(exc)))

    threads = [threading.Thread(target=client, args=(url,)) for url in urls for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(results) > 20, timeout=60)
        seeds = tmp_path / "seeds-v2"
        shutil.copytree(sample_seeds, seeds)
        (seeds / NEW_DOC).write_text(NEW_TEXT)
        (seeds / "page.html").unlink()
        build = subprocess.run(
            [sys.executable, "-m", "qa", "build", "-q", "--seeds", str(seeds), "--index", str(index),
             "--model", "hash-64"], capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert build.returncode == 0, build.stderr
        new = store.current_generation(index).name
        assert new != first

        def live(url: str) -> bool:
            return Path(httpx.get(f"{url}/api/info", timeout=30).json()["path"]).name == new

        for url in urls:
            wait_for(lambda url=url: live(url), timeout=60)
        settled = len(results)
        wait_for(lambda: len(results) > settled + 20, timeout=60)  # more answers from the new one
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        for proc, _ in replicas:
            proc.send_signal(signal.SIGINT)
        for proc, _ in replicas:
            proc.wait(timeout=30)
    failed = [r for r in results if r[1] != 200]
    assert not failed, failed[:5]
    for url in urls:
        cited = [c for u, _, c in results if u == url and c is not None]
        assert NEW_DOC not in cited[0] and NEW_DOC in cited[-1]  # answered from v1, then from v2
    # the replicas wrote nothing: the builder's two generations, the live one and its predecessor
    assert sorted(p.name for p in index.iterdir() if p.name.startswith("gen-")) == sorted({first, new})
