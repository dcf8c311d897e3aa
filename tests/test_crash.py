"""SIGKILL a build at random moments: the index always loads and answers, and a re-run completes."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qa import QA, Settings

pytestmark = pytest.mark.slow
KILLS = int(os.environ.get("QA_KILL_POINTS", "12"))


def _write_corpus(seeds: Path, n: int, version: int) -> None:
    seeds.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        body = " ".join(f"Fact {j} about topic {i} version {version}." for j in range(40))
        (seeds / f"doc{i:03d}.txt").write_text(f"Topic {i}\n\n{body}\n")


def test_kill_during_build_never_breaks_the_index(tmp_path: Path) -> None:
    seeds, index = tmp_path / "seeds", tmp_path / "index"
    settings = Settings(seeds_dir=seeds, index_dir=index, model="hash-64", reader="none")
    _write_corpus(seeds, 60, 0)
    QA.build(settings=settings)
    env = dict(os.environ, QA_MODEL="hash-64", QA_READER="none")
    cmd = [sys.executable, "-m", "qa", "build", "--seeds", str(seeds), "--index", str(index), "-q"]
    # How long a full build takes, to spread the kill points over it.
    t0 = time.perf_counter()
    _write_corpus(seeds, 60, 1)
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
    duration = time.perf_counter() - t0
    rng = random.Random(1234)
    killed = 0
    for version in range(2, 2 + KILLS):
        _write_corpus(seeds, 60, version)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, duration))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(timeout=60)
        qa = QA.load(settings=settings)  # old or new generation, never a broken one
        hit = qa.search("Fact 3 about topic 7", k=1)[0]
        assert hit.chunk.doc_id == "doc007.txt"
        text = qa.document("doc007.txt").text
        assert text[hit.chunk.start : hit.chunk.end] == hit.chunk.text
        live_version = int(re.search(r"version (\d+)", text).group(1))  # type: ignore[union-attr]
        assert live_version <= version  # one consistent generation: old or new, never a mix
        assert all(f"version {live_version}." in d.text for d in qa.data.documents.values())
    assert killed >= KILLS // 2, f"only {killed} of {KILLS} builds were killed mid-way"
    # A re-run completes and the newest text is live.
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    qa = QA.load(settings=settings)
    assert f"version {1 + KILLS}" in qa.document("doc000.txt").text
    leftovers = [p.name for p in index.iterdir() if p.name.startswith(".building-")]
    assert leftovers == []
    generations = [p for p in index.iterdir() if p.name.startswith("gen-")]
    assert len(generations) <= 2


def test_two_builds_at_once_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    from qa.store import files as store

    seeds, index = tmp_path / "seeds", tmp_path / "index"
    _write_corpus(seeds, 3, 0)
    env = dict(os.environ, QA_MODEL="hash-64")
    cmd = [sys.executable, "-m", "qa", "build", "--seeds", str(seeds), "--index", str(index)]
    with store.build_lock(index):  # as if another process were building
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 5
    assert "another build is running" in out.stderr and "Traceback" not in out.stderr
