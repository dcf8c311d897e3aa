"""Shared fixtures. Unit tests never touch the network: a socket guard makes it an error."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
SHARED = ROOT.parent / "shared"

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> object:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (
        host.startswith("127.") or host in ("localhost", "::1") or self.family == socket.AF_UNIX
    ):
        raise RuntimeError(f"test tried to reach the network: {address!r}")
    return _real_connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    """A private copy of the project's seeds folder."""
    dst = tmp_path / "seeds"
    shutil.copytree(SEEDS, dst)
    return dst


@pytest.fixture
def fake_settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Settings with the deterministic hashing embedder and the sentence reader."""
    from qa.config import Settings

    return Settings(
        seeds_dir=tmp_path / "seeds",
        index_dir=tmp_path / "index",
        model="hash-64",
        reader="none",
        min_confidence=0.0,
    )


SAMPLE_DOCS = {
    "solar.md": "# The Solar System\n\nThe Sun is a star at the center of the Solar System. "
    "Jupiter is the largest planet. Mercury is the planet closest to the Sun.\n\n"
    "## Moons\n\nEarth has one natural satellite, called the Moon. Mars has two small moons, "
    "Phobos and Deimos.\n",
    "rivers/nile.txt": "The Nile\n\nThe Nile is a major river in northeastern Africa. It flows "
    "north into the Mediterranean Sea. The Nile is about 6,650 km long.\n",
    "page.html": "<html><head><title>Bread baking</title><script>alert('x')</script></head>"
    "<body><h1>Bread</h1><p>Bread is baked from a dough of flour and water.</p>"
    "<p>Yeast makes the dough rise.</p><style>p{color:red}</style></body></html>",
}


@pytest.fixture
def sample_seeds(tmp_path: Path) -> Path:
    root = tmp_path / "seeds"
    for name, text in SAMPLE_DOCS.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
