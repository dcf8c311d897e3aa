"""Builds on a Ray cluster: workers read, parse, chunk and embed; the driver writes the index.

The ``cluster`` setting (``qa build --cluster``) picks the cluster: ``local:N`` starts one of N
workers on this machine for the build and stops it afterwards; ``auto`` or ``ray://HOST:PORT``
uses a running one. Ray is imported here only, and only for such a build
(``pip install 'qa[cluster]'``).

A build makes two rounds over one pool of Ray actors, each of which loads the embedding model
once, at its first text:

1. The driver lists the seeds folder; the workers read and parse its files
   (``sources.read_entry``: a file they skip gets a local build's warning) and chunk the
   documents that are new or changed since the live generation. Only paths travel to the
   workers, so the folder must be visible to every worker at the same path (docs/scale.md).
2. ``index.build`` runs on the driver as in a local build, under the same lock, with the
   workers' chunks and a :class:`ClusterEmbedder` that spreads the texts to embed (chunk and
   sentence vectors) over the workers. What is reused, written and published is therefore what
   a local build reuses, writes and publishes.

Faults: a worker that dies is restarted and its task retried (``RETRIES`` times). A driver that
dies leaves the live generation as it was (only ``files.publish`` replaces it) and releases the
build lock with its process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa.config import Settings
from qa.errors import ConfigError, QAError, SourceError
from qa.ingest import sources
from qa.ingest.chunking import chunk_document
from qa.store import files as store
from qa.store import index as index_mod
from qa.store.embedding import Embedder, Pooled, ProgressFn, Spans, make_embedder, weights_fingerprint
from qa.types import Chunk, Document

log = logging.getLogger(__name__)

LOCAL = "local:"
#: Files a worker reads in one task, and texts it embeds in one: small enough to spread a small
#: corpus over every worker and to lose little work when one dies, large enough that Ray's cost
#: per task (about a millisecond) stays far below the work in it.
TASK_FILES = 16
TASK_TEXTS = 256
#: Tasks queued on each worker, so that none waits while the driver collects a result.
IN_FLIGHT = 2
#: Restarts of a dead worker, and retries of the task it was running.
RETRIES = 3
#: Attempts to reach a running cluster through Ray Client (``_init_address``).
CONNECT_ATTEMPTS = 3


@dataclass(frozen=True)
class Read:
    """One file as a worker read it: the document (None when skipped), the warnings naming it,
    and its chunks (None when the live generation's can be reused)."""

    document: Document | None
    warnings: list[str]
    chunks: list[Chunk] | None


class Worker:
    """The state of one Ray actor: the settings, and the embedding model, loaded at its first
    text (an up-to-date build loads none)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._embedder: Any = None

    def _model(self) -> Any:
        if self._embedder is None:
            self._embedder = make_embedder(self.settings.model)
        return self._embedder

    def read(self, root: str, names: list[str], known: dict[str, tuple[str, str]]) -> list[Read]:
        """Read and parse the files ``names`` (relative paths) of the seeds folder ``root``, and
        chunk each document whose (sha256, title) is not the one ``known`` holds for its id."""
        base = Path(root)
        if not base.is_dir():
            raise SourceError(
                f"the seeds folder {root} is not visible on the cluster worker on "
                f"{socket.gethostname()}: make it a shared folder mounted at the same path on every "
                "node (docs/scale.md)"
            )
        s = self.settings
        out = []
        for name in names:
            doc, warnings = sources.read_entry(base, base / name, s.max_file_bytes)
            chunks = None
            if doc is not None and known.get(doc.doc_id) != (doc.sha256, doc.title):
                chunks = chunk_document(doc, s.chunk_tokens, s.chunk_overlap, s.encoding)
            out.append(Read(doc, warnings, chunks))
        return out

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model().embed(texts, batch_size=self.settings.batch_size))

    def embed_pooled(self, texts: list[str], spans: Spans) -> Pooled:
        vectors, pooled = self._model().embed_pooled(texts, spans, batch_size=self.settings.batch_size)
        return vectors, pooled

    def dim(self) -> int:
        return int(self._model().dim)

    def pid(self) -> int:
        return os.getpid()


class WorkerPool:
    """Ray actors running :class:`Worker`, kept busy by a scheduler on the driver."""

    def __init__(self, ray: Any, actors: list[Any]) -> None:
        self.ray = ray
        self.actors = actors

    def map(
        self, method: str, payloads: Sequence[tuple[Any, ...]], done: Callable[[int], None] | None = None
    ) -> list[Any]:
        """``Worker.method(*payload)`` for every payload, on whichever worker is free, in order;
        ``done(i)`` is called on the driver as payload i's result arrives, whichever worker
        computed it (one progress bar for the whole cluster)."""
        ray = self.ray
        results: list[Any] = [None] * len(payloads)
        queue = deque(range(len(payloads)))
        pending: dict[Any, tuple[Any, int]] = {}

        def submit(actor: Any) -> None:
            i = queue.popleft()
            pending[getattr(actor, method).remote(*payloads[i])] = (actor, i)

        for _ in range(IN_FLIGHT):
            for actor in self.actors:
                if queue:
                    submit(actor)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            actor, i = pending.pop(ready[0])
            results[i] = self._get(ready[0])
            if done is not None:
                done(i)
            if queue:
                submit(actor)
        return results

    def call(self, method: str) -> Any:
        """``Worker.method()`` on one worker."""
        return self._get(getattr(self.actors[0], method).remote())

    def pids(self) -> list[int]:
        """Each worker's process id (tests kill one)."""
        return [int(p) for p in self.ray.get([a.pid.remote() for a in self.actors])]

    def _get(self, ref: Any) -> Any:
        """The result of a task; a QAError a worker raised is raised as itself, a worker that
        died more often than Ray retries it as a QAError."""
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, QAError):
                raise exc.cause from None
            raise
        except ray.exceptions.RayActorError as exc:
            raise QAError(
                f"a cluster worker died {RETRIES + 1} times ({str(exc).splitlines()[0][:200]}); "
                "the live index is unchanged: check the workers' memory and logs, then build again"
            ) from None


class ClusterEmbedder:
    """The ``Embedder`` protocol over a :class:`WorkerPool`: the workers embed, each with its own
    copy of ``model``. Texts are sorted by length before they are cut into tasks, so that a
    task's batches pad little, as a local build's do."""

    def __init__(self, pool: WorkerPool, model: str) -> None:
        self._pool = pool
        self._name = model
        self._dim: int | None = None
        local: Embedder = make_embedder(model)  # not loaded: asked only about its files
        self.fingerprint: str | None = getattr(local, "fingerprint", None)
        self.pools_spans = bool(getattr(local, "pools_spans", False))

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._pool.call("dim"))
        return self._dim

    def embed(
        self, texts: Sequence[str], batch_size: int = 32, progress: ProgressFn | None = None
    ) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        tasks = _tasks(texts)
        results = self._pool.map("embed", [([texts[j] for j in t],) for t in tasks], _done(tasks, progress))
        for t, vectors in zip(tasks, results, strict=True):
            out[t] = vectors
        return out

    def embed_pooled(
        self, texts: Sequence[str], spans: Spans, batch_size: int = 32, progress: ProgressFn | None = None
    ) -> Pooled:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        pooled: list[np.ndarray] = [np.zeros((0, self.dim), np.float32)] * len(texts)
        tasks = _tasks(texts)
        payloads = [([texts[j] for j in t], [list(spans[j]) for j in t]) for t in tasks]
        for t, (part, rows) in zip(
            tasks, self._pool.map("embed_pooled", payloads, _done(tasks, progress)), strict=True
        ):
            vectors[t] = part
            for j, r in zip(t, rows, strict=True):
                pooled[j] = r
        return vectors, pooled


def _tasks(texts: Sequence[str]) -> list[list[int]]:
    """Positions of ``texts``, longest first, cut into tasks of ``TASK_TEXTS``."""
    order = np.argsort([-len(t) for t in texts], kind="stable").tolist()
    return [order[i : i + TASK_TEXTS] for i in range(0, len(order), TASK_TEXTS)]


def _done(tasks: list[list[int]], progress: ProgressFn | None) -> Callable[[int], None] | None:
    """Reports a finished task's texts to ``progress``."""
    if progress is None:
        return None
    return lambda i: progress(len(tasks[i]))


def build(settings: Settings, progress: Callable[[int, int], None] | None = None) -> index_mod.BuildReport:
    """Build or update ``settings.index_dir`` from ``settings.seeds_dir`` on the cluster that
    ``settings.cluster`` names; the result is the generation a local build writes.

    ``progress(done, total)`` is called as the workers' chunks are embedded.
    """
    t0 = time.perf_counter()
    index_dir = Path(settings.index_dir)
    root = sources.seeds_root(settings.seeds_dir, index_dir)
    names: list[str] = []
    listing_warnings: list[str] = []
    marks: list[int] = []  # listing warnings written before each file, to keep a local build's order
    for path in sources.walk(root, listing_warnings):
        names.append(path.relative_to(root).as_posix())
        marks.append(len(listing_warnings))
    with store.build_lock(index_dir):
        store.clean_stale(index_dir)
        known = _known_documents(index_dir, settings)
        with connect(settings) as pool:
            shards = [names[i : i + TASK_FILES] for i in range(0, len(names), TASK_FILES)]
            payloads = [(str(root), shard, {n: known[n] for n in shard if n in known}) for shard in shards]
            reads: list[Read] = [r for part in pool.map("read", payloads) for r in part]
            warnings = _merge_warnings(listing_warnings, marks, [r.warnings for r in reads])
            for warning in warnings:  # as ``sources.read_folder`` logs them
                logging.getLogger(sources.__name__).warning(warning)
            documents = [r.document for r in reads if r.document is not None]
            if not documents:
                detail = f" ({'; '.join(warnings[:3])})" if warnings else ""
                raise SourceError(
                    f"no usable documents in {settings.seeds_dir}{detail}: {sources.ADD_FILES}, "
                    "then run `qa build`"
                )
            chunked = {r.document.doc_id: r.chunks for r in reads if r.document and r.chunks is not None}
            report = index_mod.build(
                documents, index_dir, ClusterEmbedder(pool, settings.model), settings, progress,
                warnings, chunked, lock_held=True,
            )  # fmt: skip
    report.seconds = time.perf_counter() - t0
    return report


def _merge_warnings(listing: list[str], marks: list[int], per_file: list[list[str]]) -> list[str]:
    """The listing's warnings and each file's, in the order ``sources.read_folder`` gives them."""
    out: list[str] = []
    at = 0
    for mark, warnings in zip(marks, per_file, strict=True):
        out += listing[at:mark]
        out += warnings
        at = mark
    return out + listing[at:]


def _known_documents(index_dir: Path, settings: Settings) -> dict[str, tuple[str, str]]:
    """(sha256, title) by document id in the live generation, when its chunks can be reused with
    these settings (``index._load_previous`` decides for sure; a document the workers did not
    chunk is chunked on the driver); else nothing."""
    try:
        manifest = index_mod.read_manifest(store.current_generation(index_dir))
        model = manifest["model"]
        if (
            model["name"] != settings.model
            or model.get("weights") != weights_fingerprint(settings.model)
            or manifest["chunking"] != index_mod.chunking_settings(settings)
        ):
            return {}
        return {str(d["doc_id"]): (str(d["sha256"]), str(d["title"])) for d in manifest["documents"]}
    except (QAError, KeyError, TypeError):
        return {}


def workers_of(spec: str) -> int | None:
    """N for ``local:N``, None for a running cluster."""
    return int(spec[len(LOCAL) :]) if spec.startswith(LOCAL) else None


@contextlib.contextmanager
def connect(settings: Settings) -> Iterator[WorkerPool]:
    """A pool of workers on the cluster ``settings.cluster`` names, for the block: ``local:N``
    starts a Ray cluster of N workers on this machine and stops it after the block; an address
    connects to a running cluster and takes one worker per CPU it has. A Ray session the caller
    already started is used as it is, and left running."""
    ray = import_ray()
    n = workers_of(settings.cluster)
    started = False
    if not ray.is_initialized():
        options: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
        try:
            if n is not None:
                # Loopback only: a local cluster needs no other interface.
                ray.init(num_cpus=n, include_dashboard=False, _node_ip_address="127.0.0.1", **options)
            else:
                _init_address(ray, settings.cluster, options)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
            # Ray Client sends the cluster's token only when told to (`auto` finds the token file
            # by itself); Ray 2.59+ clusters have token authentication on once a token exists
            auth = (
                "; a cluster with token authentication also needs RAY_AUTH_MODE=token and its "
                "token (RAY_AUTH_TOKEN, or ~/.ray/auth_token) here"
                if settings.cluster.startswith("ray://")
                else ""
            )
            why = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise ConfigError(
                f"cannot start or reach the Ray cluster {settings.cluster!r} ({why}): start one "
                f"with `ray start --head`, or build with --cluster local:N{auth}"
            ) from None
        started = True
    actors: list[Any] = []
    try:
        if n is None:
            n = max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(Worker).options(num_cpus=1, max_restarts=RETRIES, max_task_retries=RETRIES)
        actors = [remote.remote(settings) for _ in range(n)]
        yield WorkerPool(ray, actors)
    finally:
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        if started:
            ray.shutdown()


def _init_address(ray: Any, address: str, options: dict[str, Any]) -> None:
    """Connect to the running cluster at ``address``. Ray Client's server forks a process per
    client, and that fork sometimes fails at once ("Initialization failure from server", seen with
    Ray 2.60 on a loaded machine); a new attempt gets a new process, so it is tried up to 3 times."""
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            ray.init(address=address, **options)
            return
        except ConnectionAbortedError as exc:
            if attempt == CONNECT_ATTEMPTS or "Initialization failure" not in str(exc):
                raise
            with contextlib.suppress(Exception):
                ray.shutdown()
            time.sleep(attempt)


def import_ray() -> Any:
    """The ``ray`` module, with its usage statistics off; ConfigError when it is not installed."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "building on a cluster needs Ray: pip install 'qa[cluster]' (or build without --cluster)"
        ) from None
    return ray
