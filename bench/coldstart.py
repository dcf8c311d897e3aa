"""Section 5: cold start, from process start to the first answer with a prebuilt index.

Each run is a fresh ``python`` process: interpreter start, ``import qa``, ``QA.load`` (index
files, checksums), the first ``ask`` (which loads the embedding model and the reader), then a
second ``ask`` for comparison. Times are taken from one clock shared by parent and child.

Child mode (used internally): ``python -m bench.coldstart child INDEX_DIR QUESTION T_LAUNCH VARIANT``
(VARIANT ``after``: the engine as it is; ``before``: the embedding model loaded through
sentence-transformers, as before this work).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, load_line, median, table


def run(index_dir: Path, question: str, repeats: int, label: str) -> tuple[dict[str, Any], list[str]]:
    """Fresh processes, alternating: the engine as it is, and the embedding model loaded through
    sentence-transformers (as before this work)."""
    runs: dict[str, list[dict[str, Any]]] = {"after": [], "before": []}
    for _ in range(repeats):
        for variant in ("after", "before"):
            runs[variant].append(_child(index_dir, question, variant))
    keys = ["interpreter", "import_qa", "load_index", "first_ask", "first_answer", "second_ask"]
    med = {v: {k: median([r[k] for r in rs]) for k in keys} for v, rs in runs.items()}
    result = {"runs": runs, "median_seconds": med, "index": str(index_dir)}
    a, b = med["after"], med["before"]
    md = [
        table(
            f"Cold start, {label} (median of {repeats} fresh processes each, alternating; {load_line()})",
            ["step", "seconds", "model loaded via sentence-transformers (before)"],
            [
                ["python interpreter up", a["interpreter"], b["interpreter"]],
                ["import qa", a["import_qa"], b["import_qa"]],
                ["QA.load (index files, checksums)", a["load_index"], b["load_index"]],
                ["first ask (loads the embedding model and the reader)", a["first_ask"], b["first_ask"]],
                ["**process start to first answer**", a["first_answer"], b["first_answer"]],
                ["second ask (warm), for comparison", a["second_ask"], b["second_ask"]],
            ],
        )
    ]
    return result, md


def _child(index_dir: Path, question: str, variant: str) -> dict[str, Any]:
    t_launch = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.coldstart", "child", str(index_dir), question, repr(t_launch), variant],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cold start child failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def child(index_dir: str, question: str, t_launch: str, variant: str) -> None:
    t0 = float(t_launch)
    t_up = time.time()
    from qa import QA

    if variant == "before":
        from qa.store.embedding import MeanPoolingModel

        MeanPoolingModel.open = classmethod(lambda cls, path: None)  # type: ignore[assignment,method-assign]

    t_import = time.time()
    qa = QA.load(index_dir)
    t_load = time.time()
    qa.ask(question)
    t_first = time.time()
    qa.ask(question)
    t_second = time.time()
    print(
        json.dumps(
            {
                "interpreter": t_up - t0,
                "import_qa": t_import - t_up,
                "load_index": t_load - t_import,
                "first_ask": t_first - t_load,
                "first_answer": t_first - t0,
                "second_ask": t_second - t_first,
                "reader": qa.reader.name,
            }
        )
    )


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "child":
    child(*sys.argv[2:])
