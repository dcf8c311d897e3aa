"""Builds on a local Ray cluster against a local build: ``python -m bench.cluster [--docs N]``.

The corpus is the first N SQuAD paragraphs (one file each), built from scratch with the bundled
model, in one process, configuration after configuration:

* **local**: the product's local build (read, chunk, embed on this process's torch threads, write
  the generation), with the model already loaded; loading it is timed apart;
* **cluster start, N workers**: ``qa.store.cluster.connect`` for ``local:N`` with every worker
  loading the model, then the cluster stopped: the fixed cost of a cluster build;
* **cluster build, N workers**: ``qa.store.cluster.build`` from scratch, start and stop included.

Ratios are local time over cluster time (above 1: the cluster is faster). The cluster pays from
the corpus size where its fixed cost is won back by its faster embedding, if it is faster at all:
``(start - model load) / (1 / local rate - 1 / cluster rate)`` chunks.

It runs itself in new network, PID and mount namespaces (``unshare``, as root): Ray's processes
probe cloud-metadata addresses at start-up, and there only loopback exists.
Results: stdout and ``bench/results/cluster.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, load_line, machine, save, say, table

INSIDE = "QA_BENCH_IN_NAMESPACE"


def in_namespace(argv: list[str]) -> list[str]:
    """``argv`` run alone in new network, PID and mount namespaces, with only loopback up."""
    return [
        "unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
        "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *argv,
    ]  # fmt: skip


def measure(docs: int, workers: list[int], rounds: int) -> dict[str, Any]:
    """Time each configuration ``rounds`` times on the first ``docs`` SQuAD paragraphs."""
    from bench.corpus import squad
    from qa.config import Settings
    from qa.ingest import sources
    from qa.store import cluster
    from qa.store import index as index_mod
    from qa.store.embedding import SentenceTransformerEmbedder

    work = Path(tempfile.mkdtemp(prefix="qa-bench-cluster-"))
    try:
        seeds = work / "seeds"
        seeds.mkdir()
        corpus, _ = squad(limit_docs=docs)
        for i, doc in enumerate(corpus):
            (seeds / f"{i:06d}.txt").write_text(doc.text, encoding="utf-8")
        base = Settings(seeds_dir=seeds)
        t0 = time.perf_counter()
        embedder = SentenceTransformerEmbedder(base.model)
        embedder.model  # noqa: B018 - loading is timed here, apart from the build
        model_load = time.perf_counter() - t0
        runs: dict[str, list[float]] = {}
        chunks = 0
        for r in range(rounds):
            say(f"round {r + 1}/{rounds}: local build")
            t0 = time.perf_counter()
            read = sources.read_folder(seeds, base.max_file_bytes)
            report = index_mod.build(read.documents, work / f"local-{r}", embedder, base)
            runs.setdefault("local", []).append(time.perf_counter() - t0)
            chunks = report.chunks
            for n in workers:
                settings = base.replace(cluster=f"local:{n}", index_dir=work / f"cluster-{n}-{r}")
                say(f"round {r + 1}/{rounds}: cluster start, {n} workers")
                t0 = time.perf_counter()
                with cluster.connect(settings) as pool:
                    pool.map("dim", [()] * n)  # every worker loads the model
                runs.setdefault(f"start-{n}", []).append(time.perf_counter() - t0)
                say(f"round {r + 1}/{rounds}: cluster build, {n} workers")
                t0 = time.perf_counter()
                built = cluster.build(settings)
                runs.setdefault(f"build-{n}", []).append(time.perf_counter() - t0)
                assert built.chunks == chunks, (built.chunks, chunks)
        return {"docs": len(corpus), "chunks": chunks, "model_load_s": model_load, "runs": runs}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(result: dict[str, Any], workers: list[int]) -> list[str]:
    """The Markdown tables and the break-even sentence for ``measure``'s result."""
    runs, chunks = result["runs"], result["chunks"]
    best = {k: min(v) for k, v in runs.items()}  # the least disturbed run on a shared machine
    local = best["local"]
    rows: list[list[Any]] = [["local (model loaded)", "-", local, 1.0, chunks / local, "-"]]
    lines = []
    for n in workers:
        start, build = best[f"start-{n}"], best[f"build-{n}"]
        rate = chunks / max(build - start, 1e-9)  # the cluster's rate once started
        rows.append([f"cluster, {n} worker{'s' * (n > 1)}", start, build, local / build, rate, rate / n])
        result[f"rate-{n}"] = rate
        extra = start - result["model_load_s"]
        local_rate = chunks / local
        if rate > local_rate:
            pays = extra / (1 / local_rate - 1 / rate)
            lines.append(
                f"* {n} worker(s): the cluster pays above about {pays:,.0f} chunks "
                f"(fixed cost {extra:.1f} s more than loading the model, won back at "
                f"{1 / local_rate - 1 / rate:.4f} s a chunk)."
            )
        else:
            lines.append(
                f"* {n} worker(s): never on this machine: once started, the cluster embeds "
                f"{rate:.1f} chunks/s, the local build {local_rate:.1f} (the same cores), and its start "
                f"costs {extra:.1f} s more than loading the model. It pays with workers on other machines."
            )
    md = [
        table(
            f"Cluster builds vs a local build ({result['docs']} SQuAD paragraphs, {chunks} chunks, "
            f"from scratch; model load {result['model_load_s']:.1f} s; best of {len(runs['local'])})",
            ["build", "start + stop (s)", "total (s)", "local / cluster", "chunks/s", "chunks/s per worker"],
            rows,
        )
    ]
    md += ["", *lines]
    for line in lines:
        print(line)
    return md


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=300, help="SQuAD paragraphs to build (default 300)")
    parser.add_argument("--workers", default="1,2", help="cluster sizes, comma-separated (default 1,2)")
    parser.add_argument("--rounds", type=int, default=1, help="repetitions; the best of each is kept")
    parser.add_argument("--name", default="cluster", help="results file name under bench/results/")
    args = parser.parse_args(argv)
    if not os.environ.get(INSIDE):
        if shutil.which("unshare") is None or os.geteuid() != 0:
            parser.error("needs `unshare` as root: the cluster runs where only loopback exists")
        argv = [sys.executable, "-m", "bench.cluster", *(sys.argv[1:] if argv is None else argv)]
        ray_tmp = tempfile.mkdtemp(prefix="qa-ray-", dir="/tmp")  # Ray's session files, removed after
        env = {
            **os.environ,
            INSIDE: "1",
            "RAY_TMPDIR": ray_tmp,
            "RAY_USAGE_STATS_ENABLED": "0",
            "HF_HUB_OFFLINE": "1",
        }
        try:
            return subprocess.run(in_namespace(argv), cwd=ROOT, env=env).returncode
        finally:
            shutil.rmtree(ray_tmp, ignore_errors=True)
    workers = [int(w) for w in args.workers.split(",") if w]
    md = [f"Machine: {machine()['cpu']}, {load_line()} (shared with other work)"]
    print(md[0], flush=True)
    result = measure(args.docs, workers, args.rounds)
    md += report(result, workers)
    md.append(f"\nAfter: {load_line()}")
    path = save({"machine": machine(), "args": vars(args), **result}, md, args.name)
    say(f"saved {path}")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
