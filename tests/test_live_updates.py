"""Seeds change while queries run: the swap is atomic, queries never fail, deleted docs vanish."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from qa import QA
from qa.serve.watch import SeedWatcher


def test_queries_never_fail_while_documents_change(sample_seeds: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    qa = QA.build(sample_seeds, settings=fake_settings)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[set[str]] = []

    def hammer() -> None:
        while not stop.is_set():
            try:
                hits = qa.search("penguins Nile bread Sun", k=10)
                seen.append({h.chunk.doc_id for h in hits})
                qa.ask("Where do penguins live?")
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    watcher = SeedWatcher(qa, interval=0.05)
    try:
        (sample_seeds / "penguins.txt").write_text("Penguins\n\nPenguins live in the Southern Hemisphere.\n")
        assert watcher.check()
        assert qa.ask("Where do penguins live?").citations[0].doc_id == "penguins.txt"
        (sample_seeds / "page.html").unlink()
        assert watcher.check()
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert len(seen) > 10
    # After the deletion went live, the deleted document is never cited.
    for _ in range(5):
        assert all(h.chunk.doc_id != "page.html" for h in qa.search("bread dough yeast", k=10))
    answer = qa.ask("What makes the dough rise?")
    assert all(c.doc_id != "page.html" for c in answer.citations)


def test_watcher_thread_picks_up_changes(sample_seeds: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    qa = QA.build(sample_seeds, settings=fake_settings)
    swaps: list[bool] = []
    watcher = SeedWatcher(qa, interval=0.05, on_refresh=swaps.append).start()
    try:
        (sample_seeds / "owls.md").write_text("# Owls\n\nOwls can rotate their heads 270 degrees.\n")
        deadline = time.time() + 20
        while not swaps and time.time() < deadline:
            time.sleep(0.05)
    finally:
        watcher.stop()
    assert swaps == [True]
    assert qa.search("owls rotate heads", k=1)[0].chunk.doc_id == "owls.md"


def test_emptied_seeds_folder_keeps_the_working_index(sample_seeds: Path, fake_settings) -> None:  # type: ignore[no-untyped-def]
    qa = QA.build(sample_seeds, settings=fake_settings)
    watcher = SeedWatcher(qa, interval=1)
    for f in list(sample_seeds.rglob("*")):
        if f.is_file():
            f.unlink()
    assert not watcher.check()
    assert qa.search("Nile", k=1)[0].chunk.doc_id == "rivers/nile.txt"
