"""Helpful / not-helpful feedback, appended to a local JSONL log.

One JSON object per line, never rewritten. A line goes to the file in one ``write`` on
a descriptor opened with ``O_APPEND`` and is fsync'd before ``record`` returns, so an
acknowledged entry survives a crash (or a SIGKILL). A crash can tear at most the line
being written, the last one, which was never acknowledged: :meth:`FeedbackLog.read`
skips it, and the next ``record`` cuts it off before appending, so it never swallows
the entry after it. Writers hold an exclusive ``flock`` on the file (threads and
processes alike; the kernel drops it when a process dies), so lines never interleave
and no writer cuts off a line another is still writing.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any, Literal

from qa.errors import InputError, QAError
from qa.types import Answer

#: "withdrawn": the user took their rating of that answer back (un-clicked the thumb).
Rating = Literal["helpful", "not_helpful", "withdrawn"]
RATINGS: tuple[str, ...] = ("helpful", "not_helpful", "withdrawn")
_MAX_FIELD_CHARS = 4000
_CITATION_KEYS = ("doc_id", "chunk_id", "start", "end")


class FeedbackError(QAError):
    """The feedback log could not be written."""

    http_status = 500


class FeedbackLog:
    """An append-only JSONL log of ratings given to answers."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(
        self,
        rating: str,
        question: str,
        answer: Answer | dict[str, Any] | None = None,
        *,
        channel: str = "ui",
        comment: str = "",
    ) -> dict[str, Any]:
        """Append one entry, flushed to disk, and return it.

        ``answer`` may be an :class:`Answer` or its ``to_dict()``; only the fields needed
        to find the answer again are kept (text, found, score, citation offsets).
        """
        if rating not in RATINGS:
            raise InputError(f"rating must be one of {', '.join(RATINGS)}, not {rating!r}")
        if not isinstance(question, str):
            raise InputError("question must be a string")
        data = answer.to_dict() if isinstance(answer, Answer) else answer
        if not isinstance(data, dict):
            data = {}
        citations = data.get("citations")
        entry: dict[str, Any] = {
            "ts": time.time(),
            "rating": rating,
            "channel": _text(channel),
            "question": _text(question),
            "answer": _text(data.get("text", "")),
            "found": data.get("found") is True,
            "score": _number(data.get("score")),
            "citations": [
                {k: _scalar(c.get(k)) for k in _CITATION_KEYS}
                for c in (citations if isinstance(citations, list) else [])
                if isinstance(c, dict)
            ],
        }
        if comment:
            entry["comment"] = _text(comment)
        line = (json.dumps(entry, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        try:
            with self._lock:
                self._append(line)
        except OSError as exc:
            raise FeedbackError(
                f"cannot write the feedback log {self.path}: {exc.strerror or exc}; "
                "check the folder exists and is writable, or set QA_FEEDBACK_LOG"
            ) from None
        return entry

    def _append(self, line: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # A crash mid-write left a torn, never acknowledged, last line: cut it
                # off, or this entry would be glued onto it and lost with it.
                os.ftruncate(fd, _after_last_newline(fd, size))
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:  # the new file's name must survive a crash too
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def read(self) -> list[dict[str, Any]]:
        """Every entry so far, skipping torn lines (a crash mid-write tears at most one)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for line in raw.split(b"\n"):
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out


def _after_last_newline(fd: int, size: int) -> int:
    """The offset just past the file's last newline (0 when it has none)."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        block = os.pread(fd, end - start, start)
        cut = block.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


def _text(value: Any) -> str:
    """A string for the log: bounded, and valid UTF-8 (lone surrogates become U+FFFD)."""
    text = value if isinstance(value, str) else str(value)
    text = text[:_MAX_FIELD_CHARS]
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    number = float(value)
    return number if math.isfinite(number) else 0.0


def _scalar(value: Any) -> str | int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return _text(value)
