"""Damaged state at serve time: ``python app.py`` rebuilds cleanly or exits with one message.

A truncated, corrupted, foreign or other-model index next to an unchanged seeds folder
is rebuilt from the seeds (the warning names the damaged file), and the app then serves
answers from the new index, never from the damaged one. What it cannot repair (no
seeds, an index path that is not a folder, a build already running) exits non-zero
with one line naming the path and the fix. Never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from qa import QA, Settings
from qa.serve.server import bind
from qa.store import files as store
from tests.app_fixtures import ROOT, SEED_QA, make_seeds

pytestmark = pytest.mark.slow  # starts app.py processes: seconds each
QUESTION, EXPECTED = SEED_QA[0]


def _settings(tmp: Path) -> Settings:
    return Settings(seeds_dir=tmp / "seeds", index_dir=tmp / "index", model="hash-64", reader="none")


def _free_port() -> int:
    sock = bind("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def _app(tmp: Path, port: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "QA_MODEL": "hash-64",
        "QA_READER": "none",
        "QA_WATCH_INTERVAL": "0",
        "QA_FEEDBACK_LOG": str(tmp / "feedback.jsonl"),
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--seeds", str(tmp / "seeds"),
           "--index", str(tmp / "index")]  # fmt: skip
    return subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _generation(tmp: Path) -> Path:
    return store.current_generation(tmp / "index")


def _truncate_chunks(gen: Path) -> str:
    path = gen / "chunks.jsonl"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return str(path)


def _corrupt_vectors(gen: Path) -> str:
    path = gen / "vectors.faiss"
    data = bytearray(path.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64  # same size, other bytes
    path.write_bytes(bytes(data))
    return str(path)


def _delete_bm25(gen: Path) -> str:
    victim = sorted((gen / "bm25").iterdir())[0]
    victim.unlink()
    return str(victim)


def _foreign_manifest(gen: Path) -> str:
    path = gen / "manifest.json"
    path.write_text(json.dumps({"name": "some other tool", "version": 3}))
    return str(path)


def _garbage_manifest(gen: Path) -> str:
    path = gen / "manifest.json"
    path.write_bytes(b"\x00\x01 not json \xff")
    return str(path)


def _other_model(gen: Path) -> str:
    path = gen / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["model"]["name"] = "sentence-transformers/some-other-model"
    path.write_text(json.dumps(manifest))
    return ""  # rebuilt silently: the model is named in the manifest, nothing is damaged


def _other_version(gen: Path) -> str:
    path = gen / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = 99
    path.write_text(json.dumps(manifest))
    return str(gen)


def _bad_pointer(gen: Path) -> str:
    (gen.parent / store.POINTER).write_text("../../etc\n")
    return str(gen.parent / store.POINTER)


DAMAGE: dict[str, Callable[[Path], str]] = {
    "truncated chunks.jsonl": _truncate_chunks,
    "corrupted vectors.faiss": _corrupt_vectors,
    "missing bm25 file": _delete_bm25,
    "foreign manifest": _foreign_manifest,
    "garbage manifest": _garbage_manifest,
    "manifest of another model": _other_model,
    "manifest of another format version": _other_version,
    "pointer out of the index": _bad_pointer,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_index_is_rebuilt_from_the_seeds_before_serving(tmp_path: Path, damage: str) -> None:
    make_seeds(tmp_path)
    QA.build(settings=_settings(tmp_path))
    old = _generation(tmp_path)
    named = DAMAGE[damage](old)
    port = _free_port()
    proc = _app(tmp_path, port)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line.strip() == f"Running on http://127.0.0.1:{port}/", proc.stderr.read()
        info = httpx.get(f"http://127.0.0.1:{port}/api/info", timeout=30).json()
        assert info["path"] != str(old)  # a fresh generation, not the damaged one
        answer = httpx.post(f"http://127.0.0.1:{port}/api/ask", json={"question": QUESTION}, timeout=60)
        assert EXPECTED in answer.json()["text"]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Traceback" not in err, err
    assert "Index built:" in err
    if named:
        assert "rebuilding from scratch" in err and named in err, err
    QA.load(settings=_settings(tmp_path))  # what it left behind loads and checks out


def _run_to_exit(tmp: Path) -> tuple[int, str]:
    proc = _app(tmp, _free_port())
    out, err = proc.communicate(timeout=120)
    assert "Running on" not in out  # it never served
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err  # one clear message
    return proc.returncode, errors[0]


def test_an_empty_seeds_folder_exits_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "empty.txt").write_text("")
    code, message = _run_to_exit(tmp_path)
    assert code == 3
    assert f"no usable documents in {tmp_path / 'seeds'}" in message and "`qa build`" in message


def test_a_missing_seeds_folder_exits_with_a_message(tmp_path: Path) -> None:
    code, message = _run_to_exit(tmp_path)
    assert code == 3
    assert f"seeds folder {tmp_path / 'seeds'} does not exist: create it" in message


def test_an_index_path_that_is_a_file_exits_with_a_message(tmp_path: Path) -> None:
    make_seeds(tmp_path)
    (tmp_path / "index").write_text("not a folder")
    code, message = _run_to_exit(tmp_path)
    assert code == 2
    assert f"cannot build the index in {tmp_path / 'index'}" in message
    assert "make it a writable folder, or choose another with --index" in message


def test_a_damaged_index_while_another_build_runs_is_never_served(tmp_path: Path) -> None:
    make_seeds(tmp_path)
    QA.build(settings=_settings(tmp_path))
    _truncate_chunks(_generation(tmp_path))
    with store.build_lock(tmp_path / "index"):  # as if `qa build` were running
        code, message = _run_to_exit(tmp_path)
    assert code == 5
    assert "another build is running" in message and "try again" in message
