"""Run the benchmarks and print their tables: ``python -m bench.run [--quick] [--scale 1m]``.

Sections (bench/README.md explains each and holds the latest measured tables):

1. query latency against the floor (one forward pass of the embedding model), by stage;
2. index build throughput against raw ``SentenceTransformer.encode``, and incremental rebuilds;
3. the same work through txtai (a peer, in its own virtual environment);
4. synthetic corpora at scale (100k by default; ``--scale 1m`` for a million chunks);
5. cold start to the first answer;
plus the thread-settings profile behind the fixes (before/after in one run).

Results go to stdout (Markdown tables) and ``bench/results/latest.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SECTIONS = ("threads", "build", "latency", "peer", "scale", "coldstart")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a small smoke run (minutes): subsets everywhere"
    )
    parser.add_argument("--scale", default="100k", help="synthetic sizes, comma-separated: 100k, 1m, none")
    parser.add_argument("--only", default="", help=f"comma-separated sections to run: {', '.join(SECTIONS)}")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip")
    parser.add_argument("--questions", type=int, default=0, help="SQuAD questions for latency (default 120)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating raw/pipeline build rounds")
    parser.add_argument("--name", default="latest", help="results file name under bench/results/")
    args = parser.parse_args(argv)
    only = {s for s in args.only.split(",") if s}
    skip = {s for s in args.skip.split(",") if s}
    want = [s for s in SECTIONS if (not only or s in only) and s not in skip]
    if args.scale.strip().lower() == "none":
        want = [s for s in want if s != "scale"]
    if only - set(SECTIONS) or skip - set(SECTIONS):
        parser.error(f"unknown section in --only/--skip; sections are {', '.join(SECTIONS)}")

    from bench import common
    from bench.corpus import SEED_QUESTIONS, Question, chunk_texts, sample, seed_documents, squad

    t_start = time.perf_counter()
    results: dict[str, Any] = {"machine": common.machine(), "args": vars(args)}
    md: list[str] = [
        f"Machine: {results['machine']['cpu']}, {common.load_line()}, torch "
        f"{results['machine']['torch']}, faiss {results['machine']['faiss']}"
    ]
    print(md[0], flush=True)
    quick = args.quick
    n_latency = args.questions or (30 if quick else 120)
    n_peer = 150 if quick else 1000

    if "threads" in want:
        common.say("threads: OpenMP wait policy and thread counts, before/after")
        from bench import threads

        results["threads"], part = threads.run(8 if quick else 30)
        md += part

    from qa.config import Settings
    from qa.pipeline import QA
    from qa.store.embedding import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    embedder.model  # noqa: B018 - load once, outside every timing
    work = Path(tempfile.mkdtemp(prefix="qa-bench-"))
    docs, questions = squad(limit_docs=150 if quick else None)
    squad_index = work / "squad-index"
    built = False
    if "build" in want:
        from bench import build

        common.say(f"build: SQuAD, {len(docs)} paragraphs")
        results["build"], part = build.run(
            docs, squad_index, embedder, rounds=args.rounds, incremental=2 if quick else 3
        )
        md += part
        built = True
    needs_squad = {"latency", "peer", "coldstart"} & set(want)
    if needs_squad and not built:
        from qa.store import index as index_mod

        common.say("building the SQuAD index for the query benchmarks")
        index_mod.build(docs, squad_index, embedder, Settings(index_dir=squad_index))

    if "latency" in want:
        from bench import latency

        seed_index = work / "seed-index"
        seed_qa = QA.from_documents(
            seed_documents(), settings=Settings(index_dir=seed_index), embedder=embedder
        )
        seed_qs = [Question(q, "") for q in SEED_QUESTIONS]
        results["latency_seed"], part = latency.run(
            "seed article", seed_qa, seed_qs, repeats=2 if quick else 5
        )
        md += part
        squad_qa = QA.load(settings=Settings(index_dir=squad_index), embedder=embedder)
        results["latency_squad"], part = latency.run(
            f"SQuAD ({len(docs)} paragraphs)", squad_qa, sample(questions, n_latency), repeats=1
        )
        md += part

    if "peer" in want:
        from bench import peer

        texts, doc_ids = chunk_texts(docs)
        squad_qa = QA.load(settings=Settings(index_dir=squad_index), embedder=embedder)
        our_build = results.get("build") or {"pipeline_chunks_per_s": float("nan")}
        common.say("peer: txtai")
        results["peer"], part = peer.run(
            squad_qa, texts, doc_ids, sample(questions, n_peer, seed=1), our_build
        )
        md += part

    if "scale" in want:
        from bench import scale

        sizes = [_size(s) for s in args.scale.split(",") if s.strip()]
        if quick:
            sizes = [min(s, 20_000) for s in sizes]
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix="qa-bench-scale-") as tmp:
                results[f"scale_{n}"], part = scale.run(n, Path(tmp))
            md += part

    if "coldstart" in want:
        from bench import coldstart

        results["coldstart"], part = coldstart.run(
            squad_index,
            questions[0].text,
            repeats=2 if quick else 3,
            label=f"SQuAD index ({len(docs)} paragraphs)",
        )
        md += part

    results["seconds"] = time.perf_counter() - t_start
    tail = f"\nTotal {results['seconds']:.0f} s; {common.load_line()} at the end."
    print(tail, flush=True)
    md.append(tail)
    path = common.save(results, md, args.name)
    common.say(f"results: {path} and {path.with_suffix('.md')}")
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0


def _size(text: str) -> int:
    t = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if t[-1:] in "km" else t) * mult)


if __name__ == "__main__":
    sys.exit(main())
