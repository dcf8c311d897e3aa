"""Helpful / not-helpful feedback, appended to a local JSONL log.

One JSON object per line, never rewritten: a line is written with a single ``write`` on
a file opened in append mode, then flushed and fsync'd, so a crash loses at most the
line being written and never corrupts earlier ones. A lock keeps lines from
interleaving between threads of one process; O_APPEND keeps them whole across processes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Literal

from qa.errors import InputError, QAError
from qa.types import Answer

Rating = Literal["helpful", "not_helpful"]
RATINGS: tuple[str, ...] = ("helpful", "not_helpful")
_MAX_FIELD_CHARS = 4000


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
        """Append one entry and return it.

        ``answer`` may be an :class:`Answer` or its ``to_dict()``; only the fields needed
        to find the answer again are kept (text, found, score, citation offsets).
        """
        if rating not in RATINGS:
            raise InputError(f"rating must be one of {', '.join(RATINGS)}, not {rating!r}")
        if not isinstance(question, str):
            raise InputError("question must be a string")
        data = answer.to_dict() if isinstance(answer, Answer) else (answer or {})
        entry: dict[str, Any] = {
            "ts": time.time(),
            "rating": rating,
            "channel": channel,
            "question": question[:_MAX_FIELD_CHARS],
            "answer": str(data.get("text", ""))[:_MAX_FIELD_CHARS],
            "found": bool(data.get("found", False)),
            "score": float(data.get("score", 0.0) or 0.0),
            "citations": [
                {k: c.get(k) for k in ("doc_id", "chunk_id", "start", "end")}
                for c in data.get("citations", []) or []
                if isinstance(c, dict)
            ],
        }
        if comment:
            entry["comment"] = str(comment)[:_MAX_FIELD_CHARS]
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        try:
            with self._lock:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(line)
                    f.flush()
                    os.fsync(f.fileno())
        except OSError as exc:
            raise FeedbackError(
                f"cannot write the feedback log {self.path}: {exc.strerror}; "
                "check the folder exists and is writable, or set QA_FEEDBACK_LOG"
            ) from None
        return entry

    def read(self) -> list[dict[str, Any]]:
        """Every entry so far (skipping a torn last line, if any)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out
