"""The ``qa`` command line's answers to a user's mistakes: a clear line and an exit code, never
a stack trace (with the hashing embedder and the model-free reader: no model is loaded)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qa.cli import main
from qa.store import files as store

FAST = ["--model", "hash-64", "-q"]


def _no_trace(err: str) -> None:
    assert "Traceback" not in err and err.startswith("qa: error: "), err


def test_an_index_path_that_is_a_file_is_a_clear_error(
    sample_seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    assert main(["build", "--seeds", str(sample_seeds), "--index", str(afile), *FAST]) == 2
    err = capsys.readouterr().err
    _no_trace(err)
    assert "cannot build the index in" in err and "writable folder" in err
    assert afile.read_text() == "not a folder"  # left as it was


def test_seeds_problems_exit_3_with_the_cause(
    sample_seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = ["--index", str(tmp_path / "index")]
    assert main(["build", "--seeds", str(sample_seeds / "solar.md"), *index, *FAST]) == 3
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["build", "--seeds", str(sample_seeds), "--index", str(sample_seeds / "ix"), *FAST]) == 3
    err = capsys.readouterr().err
    _no_trace(err)
    assert "inside the seeds folder" in err and not (sample_seeds / "ix").exists()


def test_an_unreadable_index_file_exits_4(
    sample_seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    index = ["--index", str(tmp_path / "index")]
    assert main(["build", "--seeds", str(sample_seeds), *index, *FAST]) == 0
    capsys.readouterr()

    def refused(path: Path) -> str:  # as for a file only root may read (CI runs as root)
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(store, "sha256_file", refused)
    assert main(["ask", "How long is the Nile?", "--reader", "none", *index, *FAST]) == 4
    err = capsys.readouterr().err
    _no_trace(err)
    assert "cannot read index file" in err and "Permission denied" in err


def test_other_file_system_refusals_are_one_line(
    sample_seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", str(tmp_path / "index"))

    monkeypatch.setattr(store, "publish", full)
    assert main(["build", "--seeds", str(sample_seeds), "--index", str(tmp_path / "index"), *FAST]) == 1
    err = capsys.readouterr().err
    assert err == f"qa: error: No space left on device ({tmp_path / 'index'})\n"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--answer", "foo"], "each --answer must follow the --history question it answered"),
        (["--history", "a", "--answer", "x", "--answer", "y"], "each --answer must follow"),
        (["--bogus", "x"], "unrecognized arguments: --bogus x"),
    ],
)
def test_ask_arguments_are_checked_with_its_own_usage(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["ask", "Who approves them?", *extra])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: qa ask ") and message in err


def test_a_history_question_may_go_without_its_answer(
    sample_seeds: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = ["--index", str(tmp_path / "index")]
    assert main(["build", "--seeds", str(sample_seeds), *index, *FAST]) == 0
    argv = ["ask", "How long is it?", "--history", "Which river flows north?", "--history",
            "What is the Nile?", "--answer", "a major river", "--reader", "none", *index, *FAST]  # fmt: skip
    assert main(argv) == 0
    assert "rivers/nile.txt" in capsys.readouterr().out  # read as a follow-up about the Nile


def test_each_skipped_file_is_reported_once(sample_seeds: Path, tmp_path: Path) -> None:
    (sample_seeds / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (sample_seeds / "fake.pdf").write_bytes(b"not a pdf at all")
    argv = [sys.executable, "-m", "qa", "build", "--seeds", str(sample_seeds),
            "--index", str(tmp_path / "index"), "--model", "hash-64"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert [line for line in lines if "latin1.txt" in line] == [
        "qa: warning: skipped latin1.txt: not valid UTF-8 (byte 3); re-save it as UTF-8"
    ]
    assert len([line for line in lines if "fake.pdf" in line]) == 1
    assert all(line.startswith("qa: warning: skipped ") for line in lines), lines  # no bare pypdf lines
