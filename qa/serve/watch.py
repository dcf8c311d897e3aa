"""Live updates: notice changes in the seeds folder, rebuild in the background, swap atomically.

Queries keep running on the old index during a rebuild: the build writes a new
generation beside the live one and ``QA.reload`` swaps it in with one assignment.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from qa.errors import QAError, ReloadError, SourceError
from qa.ingest import sources
from qa.pipeline import QA
from qa.store import index as index_mod
from qa.store.index import BuildReport

log = logging.getLogger(__name__)
Snapshot = tuple[tuple[str, int, int], ...]


def snapshot(seeds_dir: Path) -> Snapshot:
    """(path, size, mtime_ns) of every file under ``seeds_dir``: cheap to compare."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(seeds_dir):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            entries.append((path, st.st_size, st.st_mtime_ns))
    return tuple(entries)


def refresh(qa: QA) -> tuple[BuildReport, bool]:
    """Rebuild the index from the seeds folder (re-embedding only what changed), then swap it in.

    Returns the build report and whether a new index went live. Raises ReloadError when
    the seeds folder is missing or empty: that must not replace a working index with nothing.
    """
    settings = qa.settings
    try:
        result = sources.read_folder(settings.seeds_dir, settings.max_file_bytes)
    except SourceError as exc:
        raise ReloadError(f"{exc}; the current index stays live") from None
    if not result.documents:
        raise ReloadError(
            f"no usable documents in {settings.seeds_dir}; the current index stays live: "
            "add .txt, .md, .html or .pdf files, then reload"
        )
    try:
        report = index_mod.build(
            result.documents, settings.index_dir, qa.embedder, settings, None, result.warnings
        )
    except OSError as exc:
        raise QAError(
            f"cannot write the index in {settings.index_dir}: {exc.strerror or exc}; "
            "the current index stays live"
        ) from None
    return report, qa.reload()


class SeedWatcher:
    """Polls the seeds folder and refreshes the index when it changes (a daemon thread)."""

    def __init__(
        self, qa: QA, interval: float = 2.0, on_refresh: Callable[[bool], None] | None = None
    ) -> None:
        self.qa = qa
        self.interval = interval
        self.on_refresh = on_refresh
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="qa-seed-watcher", daemon=True)
        self._last = snapshot(qa.settings.seeds_dir)
        self.refresh_lock = threading.Lock()

    def start(self) -> SeedWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def check(self) -> bool:
        """Refresh now if the folder changed since the last look; True if a new index went live."""
        current = snapshot(self.qa.settings.seeds_dir)
        if current == self._last:
            return False
        with self.refresh_lock:
            try:
                _, swapped = refresh(self.qa)
            except QAError as exc:  # e.g. another build holds the lock: try again next tick
                log.warning("live update postponed: %s", exc)
                return False
            self._last = current
        if self.on_refresh:
            self.on_refresh(swapped)
        return swapped

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # never let the watcher die; the next tick retries
                log.exception("live update failed; the current index stays live")
