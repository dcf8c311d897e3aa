"""Files on disk: atomic writes, the generation pointer, the build lock, checked reads.

An index folder holds generations (``gen-*/``) and a pointer file ``CURRENT`` naming
the live one. A build writes a whole new generation beside the old one, then
replaces ``CURRENT`` with an atomic rename: a crash at any point leaves either the
old or the new generation live, never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qa.errors import BuildLockedError, ConfigError, IndexCorruptError, IndexMissingError

POINTER = "CURRENT"
LOCK = ".lock"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new content, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def current_generation(index_dir: Path) -> Path:
    """The live generation folder; IndexMissingError when none was built."""
    pointer = index_dir / POINTER
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IndexMissingError(
            f"no index in {index_dir} (missing {pointer}): run `qa build` to build it"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexCorruptError(f"cannot read {pointer} ({exc}): run `qa build`") from None
    if not name.startswith("gen-") or "/" in name or ".." in name:
        raise IndexCorruptError(f"{pointer} does not name an index generation: run `qa build`")
    gen = index_dir / name
    if not gen.is_dir():
        raise IndexCorruptError(f"{pointer} names {gen}, which is missing: run `qa build`")
    return gen


def new_generation_dir(index_dir: Path) -> Path:
    """A fresh temporary folder inside ``index_dir`` to write a generation into."""
    index_dir.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=index_dir, prefix=".building-"))


def publish(index_dir: Path, tmp_gen: Path) -> Path:
    """Make a fully written generation live, then drop all but it and its predecessor."""
    for f in tmp_gen.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(tmp_gen)
    name = f"gen-{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}"
    final = index_dir / name
    os.rename(tmp_gen, final)
    fsync_dir(index_dir)
    previous = None
    with contextlib.suppress(IndexMissingError, IndexCorruptError):
        previous = current_generation(index_dir).name
    write_atomic(index_dir / POINTER, (name + "\n").encode())
    # Keep the predecessor: a process that read CURRENT a moment ago may still open it.
    _drop_generations(index_dir, keep={name, previous})
    return final


def _drop_generations(index_dir: Path, keep: set[str | None]) -> None:
    """Remove every generation folder whose name is not in ``keep``."""
    for old in index_dir.iterdir():
        if old.is_dir() and old.name.startswith("gen-") and old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)


def clean_stale(index_dir: Path) -> None:
    """Remove what a crashed build left (call with the lock held): half-written generations,
    and generations that are neither live nor the live one's predecessor (a build killed while
    publishing: before ``CURRENT`` named its generation, or before it pruned the old ones)."""
    if not index_dir.is_dir():
        return
    for old in index_dir.iterdir():
        if old.name.startswith(".building-") and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        elif old.name.startswith(f".{POINTER}.tmp-"):
            with contextlib.suppress(OSError):
                old.unlink()
    try:
        live = current_generation(index_dir).name
    except (IndexMissingError, IndexCorruptError):
        return  # nothing is live: keep every generation for the build (or a person) to judge
    # generation names sort by the time they were published: the predecessor is the newest older one
    older = [p.name for p in index_dir.iterdir() if p.name.startswith("gen-") and p.name < live]
    _drop_generations(index_dir, keep={live, max(older, default=None)})


@contextlib.contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """Hold the index's build lock; BuildLockedError when another build holds it, ConfigError
    when ``index_dir`` cannot be a writable folder (a file, or not ours to write)."""
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(index_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        why = (
            "a file, not a folder" if index_dir.is_file() else f"{exc.filename or index_dir}: {exc.strerror}"
        )
        raise ConfigError(
            f"cannot build the index in {index_dir} ({why}); make it a writable folder, or choose "
            "another with --index (QA_INDEX_DIR)"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildLockedError(
                f"another build is running on {index_dir} (it holds {index_dir / LOCK}); "
                "wait for it to finish, then try again"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # closing releases the flock, also when the process dies


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexCorruptError(f"index file {path} is missing: run `qa build`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexCorruptError(
            f"index file {path} is damaged ({exc}): run `qa build` to rebuild it"
        ) from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise IndexCorruptError(
                        f"index file {path} is damaged at line {n}: run `qa build` to rebuild it"
                    ) from None
    except FileNotFoundError:
        raise IndexCorruptError(f"index file {path} is missing: run `qa build`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexCorruptError(f"cannot read index file {path} ({exc}): run `qa build`") from None
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
