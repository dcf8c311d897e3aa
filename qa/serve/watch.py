"""Live updates: notice changes in the seeds folder, rebuild in the background, swap atomically;
and notice a generation another process published, and swap it in.

Queries keep running on the old index during a rebuild: the build writes a new
generation beside the live one and ``QA.reload`` swaps it in with one assignment.
Replicas serving one shared index folder read-only each follow its ``CURRENT`` pointer
(:class:`GenerationFollower`), so one builder updates them all without a restart.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Self

from qa.errors import QAError, ReloadError, SourceError
from qa.ingest import sources
from qa.pipeline import QA
from qa.store import files as store
from qa.store import index as index_mod
from qa.store.index import BuildReport

log = logging.getLogger(__name__)
Snapshot = tuple[tuple[str, int, int], ...]


def snapshot(seeds_dir: Path) -> Snapshot:
    """(path, size, mtime_ns) of every file under ``seeds_dir``: cheap to compare."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(seeds_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # never read, as in a build
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
        result = sources.read_folder(settings.seeds_dir, settings.max_file_bytes, settings.index_dir)
    except SourceError as exc:
        raise ReloadError(f"{exc}; the current index stays live") from None
    if not result.documents:
        raise ReloadError(
            f"no usable documents in {settings.seeds_dir}; the current index stays live: "
            f"{sources.ADD_FILES}, then reload"
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


def follow(qa: QA) -> tuple[BuildReport, bool]:
    """A replica's reload: swap in the index's live generation, building nothing (another process
    builds). Returns a report on the live index and whether it was swapped in."""
    swapped = qa.reload()
    data = qa.data
    counts = data.manifest.get("counts", {})
    report = BuildReport(
        documents=int(counts.get("documents", 0)), chunks=int(counts.get("chunks", 0)),
        up_to_date=True, generation=data.path.name,
    )  # fmt: skip
    return report, swapped


class _Poller:
    """A daemon thread that calls ``check`` every ``interval`` seconds; an error never ends it."""

    def __init__(self, interval: float, name: str) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def check(self) -> bool:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # never let the watcher die; the next tick retries
                log.exception("live update failed; the current index stays live")


class SeedWatcher(_Poller):
    """Polls the seeds folder and refreshes the index when it changes (a daemon thread)."""

    def __init__(
        self, qa: QA, interval: float = 2.0, on_refresh: Callable[[bool], None] | None = None
    ) -> None:
        super().__init__(interval, "qa-seed-watcher")
        self.qa = qa
        self.on_refresh = on_refresh
        self._last = snapshot(qa.settings.seeds_dir)
        self.refresh_lock = threading.Lock()

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


class GenerationFollower(_Poller):
    """Polls the index's ``CURRENT`` pointer and swaps in the generation another process
    published (one read of a small file a tick). Questions keep the old generation until the
    new one is loaded whole; its files stay readable meanwhile, since they are memory-mapped
    and a build keeps the live generation's predecessor."""

    def __init__(self, qa: QA, interval: float = 2.0, on_swap: Callable[[], None] | None = None) -> None:
        super().__init__(interval, "qa-generation-follower")
        self.qa = qa
        self.on_swap = on_swap
        self._failed = ""  # a generation that would not load: warned about once

    def check(self) -> bool:
        """Swap in the live generation if it is not the one served; True if it was swapped in."""
        try:
            live = store.current_generation(self.qa.settings.index_dir).name
        except QAError:  # no pointer, or a damaged one: keep serving what is loaded
            return False
        if live == self.qa.data.path.name or live == self._failed:
            return False
        try:
            swapped = self.qa.reload()
        except QAError as exc:
            self._failed = live
            log.warning("generation %s not served: %s; the current index stays live", live, exc)
            return False
        if swapped and self.on_swap:
            self.on_swap()
        return swapped
