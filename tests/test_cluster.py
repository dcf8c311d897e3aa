"""A build on a Ray cluster (qa.store.cluster) equals a local build, and survives killed workers
and a killed driver.

Every cluster runs in fresh network, PID and mount namespaces (``unshare``, as root: CI runs as
root). Only loopback exists there, so Ray's start-up probes of cloud-metadata addresses reach
nothing; and when the namespace's first process (the build) ends, the kernel ends every Ray
process it started, so none is left behind. This file doubles as the script run inside:
``python tests/test_cluster.py '{"builds": [...], ...}'``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
QUESTIONS = ("How long is the Nile?", "What makes the dough rise?", "Which gear do the otters fix?")
#: Words the made-up documents are written from (several chunks each, many sentences).
WORDS = (
    "otters",
    "beavers",
    "herons",
    "build",
    "repair",
    "dams",
    "rivers",
    "valleys",
    "lanterns",
    "gears",
    "clocks",
    "towers",
    "bridges",
    "ferries",
    "harbours",
    "millers",
    "bakers",
    "weave",
    "copper",
    "timber",
    "granite",
    "orchards",
    "pumps",
    "canals",
)


# -- the script run inside the namespace -------------------------------------------------------
def _script(spec: dict[str, Any]) -> None:
    """Run the builds ``spec`` lists on local Ray clusters; write what happened to spec["out"]."""
    from qa.config import Settings
    from qa.pipeline import QA
    from qa.store import cluster

    cluster.TASK_FILES = spec.get("task_files", cluster.TASK_FILES)
    pools: list[Any] = []
    real_connect = cluster.connect

    @contextlib.contextmanager
    def spy(settings: Settings) -> Iterator[Any]:
        with real_connect(settings) as pool:
            pools.append(pool)
            yield pool
            out["pids_after"].append(pool.pids())  # a restarted worker has a new pid

    cluster.connect = spy
    out: dict[str, Any] = {"builds": [], "pids_after": [], "killed": [], "clusters": []}
    if spec.get("head"):  # a running cluster, started as its users start one; the namespace ends it
        ray_cli = str(Path(sys.executable).with_name("ray"))
        head = [ray_cli, "start", "--head", "--num-cpus", "2", "--include-dashboard=false",
                "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                "--ray-client-server-port", str(spec["head"]),
                "--temp-dir", os.environ["RAY_TMPDIR"]]  # fmt: skip
        started = subprocess.run(head, capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, started.stderr[-3000:]
    for cli in spec.get("cli_builds", []):  # a separate process: the token is read once a process
        argv = [sys.executable, "-m", "qa", "build", "--seeds", cli["seeds"], "--index", cli["index"],
                "--model", spec["model"], "--cluster", cli["cluster"]]  # fmt: skip
        done = subprocess.run(
            argv, env={**os.environ, **cli["env"]}, capture_output=True, text=True, timeout=120
        )
        out["cli"] = [*out.get("cli", []), {"rc": done.returncode, "stderr": done.stderr[-3000:]}]
    for step in spec["builds"]:
        cluster.TASK_TEXTS = step.get("task_texts", spec.get("task_texts", cluster.TASK_TEXTS))
        calls: list[tuple[int, int]] = []

        def progress(done: int, total: int, step: dict[str, Any] = step, calls: list = calls) -> None:
            calls.append((done, total))
            if step.get("kill_worker") and len(calls) == 1:
                pid = pools[-1].pids()[0]
                os.kill(pid, signal.SIGKILL)
                out["killed"].append(pid)
            if step.get("hang"):  # the test kills this driver now
                Path(step["hang"]).write_text("embedding")
                time.sleep(600)

        settings = Settings(
            seeds_dir=Path(step["seeds"]), index_dir=Path(step["index"]), model=spec["model"],
            reader=spec.get("reader", "none"), min_confidence=0.0,
            cluster=step.get("cluster", spec["cluster"]),
        )  # fmt: skip
        out["clusters"].append(settings.cluster)
        qa = QA.build(settings=settings, progress=progress)
        report = qa.last_build
        assert report is not None
        out["builds"].append(
            {"warnings": report.warnings, "embedded": report.embedded, "progress": calls,
             "generation": report.generation, "ray_loaded": "ray" in sys.modules}
        )  # fmt: skip
        Path(spec["out"]).write_text(json.dumps(out))


# -- helpers for the tests ---------------------------------------------------------------------
def _namespace_works() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c", "ip link set lo up"]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


def _ray_installed() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


needs_cluster = pytest.mark.skipif(
    not (_ray_installed() and _namespace_works()),
    reason="needs Ray (pip install -e '.[cluster]') and `unshare --net --pid` (root)",
)


def in_namespace(argv: list[str]) -> list[str]:
    """``argv`` run alone in new network, PID and mount namespaces, with only loopback up."""
    return [
        "unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
        "sh", "-c", 'ip link set lo up && exec "$0" "$@"', *argv,
    ]  # fmt: skip


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A short private folder for Ray's session files (its socket paths must stay short)."""
    path = Path(tempfile.mkdtemp(prefix="qa-ray-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env(ray_tmp: Path) -> dict[str, str]:
    return {**os.environ, "RAY_TMPDIR": str(ray_tmp), "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}


def run_script(spec: dict[str, Any], ray_tmp: Path, timeout: float = 300) -> dict[str, Any]:
    proc = subprocess.run(
        in_namespace([sys.executable, str(HERE), json.dumps(spec)]),
        env=_env(ray_tmp), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert_no_ray_left(ray_tmp)
    return json.loads(Path(spec["out"]).read_text())


def ray_processes(ray_tmp: Path) -> list[str]:
    """The running processes started for this test's clusters (their command lines name ``ray_tmp``)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if str(ray_tmp) in cmd:
                    found.append(f"{proc.name}: {cmd[:120]}")
    return found


def assert_no_ray_left(ray_tmp: Path, grace: float = 15.0) -> None:
    """No process started for this test's clusters is left; the kernel may take a moment to end
    a killed namespace's processes."""
    deadline = time.monotonic() + grace
    while (left := ray_processes(ray_tmp)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, left


def make_seeds(root: Path, version: int) -> Path:
    """Made-up documents with several chunks each, a parse failure and an unsupported file.
    Version 2 changes one document, adds one and removes one."""
    rng = np.random.default_rng(7)
    root.mkdir(parents=True)
    for n in range(8):
        sentences = [
            " ".join(rng.choice(WORDS, size=int(rng.integers(6, 14)))).capitalize() + "."
            for _ in range(int(rng.integers(40, 70)))
        ]
        if version == 2 and n == 5:
            continue
        if version == 2 and n == 2:
            sentences[3] = "The otters fix the brass gear of the harbour clock every spring."
        (root / f"doc{n}.md").write_text(f"# Report {n}\n\n" + " ".join(sentences) + "\n")
    (root / "rivers").mkdir()
    (root / "rivers" / "nile.txt").write_text("The Nile\n\nThe Nile is about 6,650 km long.\n")
    (root / "page.html").write_text("<title>Bread</title><p>Yeast makes the dough rise.</p>")
    (root / "broken.txt").write_bytes(b"caf\xe9 au lait\n")  # not UTF-8: skipped with a warning
    (root / "notes.xyz").write_text("unsupported")
    if version == 2:
        (root / "new.txt").write_text("Canals\n\nThe millers dig canals to the orchards.\n")
    return root


def assert_same_index(a: Path, b: Path, atol: float = 1e-5) -> None:
    """Two indexes hold the same generation: identical documents, chunks (ids, texts, offsets)
    and BM25 files, vectors within ``atol``, sentence vectors within fp16 rounding of that."""
    from qa.store import files as store
    from qa.store.index import load

    ga, gb = store.current_generation(a), store.current_generation(b)
    for name in ("documents.jsonl", "chunks.jsonl"):
        assert (ga / name).read_bytes() == (gb / name).read_bytes(), name
    bm25 = sorted(p.relative_to(ga) for p in (ga / "bm25").rglob("*") if p.is_file())
    assert bm25 == sorted(p.relative_to(gb) for p in (gb / "bm25").rglob("*") if p.is_file())
    for rel in bm25:
        assert (ga / rel).read_bytes() == (gb / rel).read_bytes(), rel
    ma, mb = (json.loads((g / "manifest.json").read_text()) for g in (ga, gb))
    for key in ("model", "chunking", "vector_index", "lexical", "sentence_vectors", "counts", "documents"):
        assert ma[key] == mb[key], key
    da, db = load(a), load(b)
    va = da.vectors.reconstruct_n(0, da.vectors.ntotal)
    vb = db.vectors.reconstruct_n(0, db.vectors.ntotal)
    assert va.shape == vb.shape and len(va) > 0
    assert float(np.abs(va - vb).max()) <= atol
    assert da.sentences is not None and db.sentences is not None
    assert np.array_equal(da.sentence_starts, db.sentence_starts)
    sa, sb = np.asarray(da.sentences, np.float32), np.asarray(db.sentences, np.float32)
    # fp16 keeps 11 bits: a value within atol before rounding may land one step away after it
    assert np.allclose(sa, sb, rtol=2**-10, atol=atol)


def assert_same_answers(settings: Any, a: Path, b: Path) -> None:
    from qa.pipeline import QA

    qa_a, qa_b = QA.load(a, settings=settings), QA.load(b, settings=settings)
    for question in QUESTIONS:
        x, y = qa_a.ask(question), qa_b.ask(question)
        assert (x.text, x.found) == (y.text, y.found), question
        assert [(c.doc_id, c.start, c.end) for c in x.citations] == [
            (c.doc_id, c.start, c.end) for c in y.citations
        ]
        assert x.score == pytest.approx(y.score, abs=1e-4)
        assert [h.chunk.chunk_id for h in x.hits] == [h.chunk.chunk_id for h in y.hits]


def local_build(seeds: Path, index: Path, settings: Any) -> Any:
    from qa.pipeline import QA

    qa = QA.build(seeds, index, settings=settings)
    assert qa.last_build is not None
    return qa.last_build


# -- the tests -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One script run, two cluster builds of 2 workers: v1 from scratch, and v2 over a (local)
    build of v1, incrementally, with a worker killed once the first embedding task is back (one
    text a task, so that it still has tasks in flight)."""
    from qa.config import Settings

    if not (_ray_installed() and _namespace_works()):
        pytest.skip("needs Ray (pip install -e '.[cluster]') and `unshare --net --pid` (root)")
    tmp = tmp_path_factory.mktemp("cluster")
    v1, v2 = make_seeds(tmp / "v1", 1), make_seeds(tmp / "v2", 2)
    local_build(v1, tmp / "incremental", Settings(model="hash-64", reader="none"))
    ray_tmp = Path(tempfile.mkdtemp(prefix="qa-ray-", dir="/tmp"))
    spec = {
        "model": "hash-64", "cluster": "local:2", "task_texts": 4, "task_files": 2,
        "out": str(tmp / "out.json"),
        "builds": [{"seeds": str(v1), "index": str(tmp / "fresh")},
                   {"seeds": str(v2), "index": str(tmp / "incremental"), "kill_worker": True,
                    "task_texts": 1}],
    }  # fmt: skip
    try:
        out = run_script(spec, ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    yield {"tmp": tmp, "v1": v1, "v2": v2, "out": out}


@pytest.mark.slow
def test_cluster_build_equals_local_build(two_builds: dict[str, Any], fake_settings: Any) -> None:
    tmp, out = two_builds["tmp"], two_builds["out"]
    local = tmp / "local"
    report = local_build(two_builds["v1"], local, fake_settings)
    first = out["builds"][0]
    # a file that fails to parse on a worker gets a local build's warning, in the same place
    assert first["warnings"] == report.warnings
    assert any(w.startswith("skipped broken.txt: not valid UTF-8") for w in first["warnings"])
    assert any("notes.xyz" in w for w in first["warnings"])
    assert first["embedded"] == report.embedded > 0
    # one progress bar, fed by the workers' tasks in turn, up to every chunk embedded
    done = [d for d, _ in first["progress"]]
    assert done == sorted(done) and len(done) > 2
    assert first["progress"][-1] == [report.embedded, report.embedded]
    assert_same_index(local, tmp / "fresh", atol=0.0)
    assert_same_answers(fake_settings, local, tmp / "fresh")


@pytest.mark.slow
def test_killed_worker_is_retried_and_the_result_is_the_same(
    two_builds: dict[str, Any], fake_settings: Any
) -> None:
    out = two_builds["out"]
    killed = out["killed"][0]
    assert killed not in out["pids_after"][1]  # Ray restarted the worker in a new process
    assert len(out["pids_after"][1]) == 2
    second = out["builds"][1]
    local = two_builds["tmp"] / "local-incremental"
    local_build(two_builds["v1"], local, fake_settings)
    report = local_build(two_builds["v2"], local, fake_settings)
    # incremental on both sides: only the changed and added documents' chunks are embedded
    assert second["embedded"] == report.embedded
    assert 0 < report.embedded < 10
    assert second["progress"][-1][0] == report.embedded
    assert second["warnings"] == report.warnings
    assert_same_index(local, two_builds["tmp"] / "incremental", atol=0.0)
    assert_same_answers(fake_settings, local, two_builds["tmp"] / "incremental")


@pytest.mark.slow
@needs_cluster
def test_killed_driver_keeps_the_old_index_and_the_next_build_completes(
    tmp_path: Path, fake_settings: Any, ray_tmp: Path
) -> None:
    from qa.pipeline import QA
    from qa.store import files as store

    v1, v2 = make_seeds(tmp_path / "v1", 1), make_seeds(tmp_path / "v2", 2)
    index = tmp_path / "index"
    local_build(v1, index, fake_settings)
    live = store.current_generation(index)
    before = QA.load(index, settings=fake_settings).ask(QUESTIONS[2])
    marker = tmp_path / "embedding"
    spec = {
        "model": "hash-64", "cluster": "local:2", "task_texts": 4, "out": str(tmp_path / "out.json"),
        "builds": [{"seeds": str(v2), "index": str(index), "hang": str(marker)}],
    }  # fmt: skip
    proc = subprocess.Popen(
        in_namespace([sys.executable, str(HERE), json.dumps(spec)]), env=_env(ray_tmp),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "the cluster build never started embedding"
            time.sleep(0.2)
    finally:
        proc.kill()  # unshare: the kernel kills its child, the driver, and so the whole namespace
        proc.wait(timeout=60)
    assert_no_ray_left(ray_tmp)
    # the old generation is still the live one, whole, and answers as before
    assert store.current_generation(index) == live
    assert QA.load(index, settings=fake_settings).ask(QUESTIONS[2]).text == before.text
    # the next build, from the command line, completes and equals a local build of v2
    cli = [sys.executable, "-m", "qa", "build", "--cluster", "local:2", "--seeds", str(v2),
           "--index", str(index), "--model", "hash-64"]  # fmt: skip
    done = subprocess.run(
        in_namespace(cli), env={**_env(ray_tmp), "QA_PROGRESS": "1"}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "built " in done.stdout and "warning: skipped broken.txt" in done.stderr
    assert "embedding: 100%" in done.stderr  # one bar for the whole build
    assert_no_ray_left(ray_tmp)
    assert not any(p.name.startswith(".building-") for p in index.iterdir())
    local = tmp_path / "local"
    local_build(v2, local, fake_settings)
    assert_same_index(local, index, atol=0.0)


@pytest.mark.slow
@needs_cluster
def test_a_running_cluster_by_auto_and_by_a_ray_client_address(
    tmp_path: Path, fake_settings: Any, ray_tmp: Path
) -> None:
    """A cluster started with `ray start --head`, with token authentication on: `auto` builds v1
    from scratch, and Ray Client (`ray://`) builds v2 over it incrementally; each equals a local
    build, and the workers, one per CPU the cluster has, are Ray's, not a cluster `qa` started.
    A Ray Client with the wrong token is refused, with a message that names the token settings,
    and the index stays as it was."""
    v1, v2 = make_seeds(tmp_path / "v1", 1), make_seeds(tmp_path / "v2", 2)
    index = tmp_path / "index"
    port = 10001
    spec = {
        "model": "hash-64", "cluster": "auto", "task_texts": 4, "head": port,
        "out": str(tmp_path / "out.json"),
        "builds": [{"seeds": str(v1), "index": str(index)},
                   {"seeds": str(v2), "index": str(index), "cluster": f"ray://127.0.0.1:{port}"}],
        "cli_builds": [{"seeds": str(v1), "index": str(tmp_path / "refused"),
                        "cluster": f"ray://127.0.0.1:{port}",
                        # a refused Ray Client gives up after about 3 s instead of 30
                        "env": {"RAY_AUTH_TOKEN": "0" * 32, "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "1",
                                "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "2"}}],
    }  # fmt: skip
    token = os.urandom(16).hex()  # the client must present the cluster's token
    env = {**_env(ray_tmp), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    proc = subprocess.run(
        in_namespace([sys.executable, str(HERE), json.dumps(spec)]), env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert_no_ray_left(ray_tmp)
    out = json.loads(Path(spec["out"]).read_text())
    refused = out["cli"][0]
    assert refused["rc"] == 2 and "Traceback" not in refused["stderr"]
    assert (
        "cannot start or reach the Ray cluster" in refused["stderr"] and "RAY_AUTH_TOKEN" in refused["stderr"]
    )
    assert not (tmp_path / "refused").exists() or not any((tmp_path / "refused").glob("gen-*"))
    assert out["clusters"] == ["auto", f"ray://127.0.0.1:{port}"]
    assert [len(p) for p in out["pids_after"]] == [2, 2]  # one worker per CPU of the cluster
    local = tmp_path / "local"
    first = local_build(v1, local, fake_settings)
    assert out["builds"][0]["embedded"] == first.embedded > 0
    assert out["builds"][0]["warnings"] == first.warnings
    second = local_build(v2, local, fake_settings)
    assert out["builds"][1]["embedded"] == second.embedded
    assert 0 < second.embedded < first.embedded  # incremental over the cluster-built generation
    assert_same_index(local, index, atol=0.0)
    assert_same_answers(fake_settings, local, index)


@pytest.mark.model
@needs_cluster
def test_cluster_build_with_the_real_model_equals_local_build(
    sample_seeds: Path, tmp_path: Path, ray_tmp: Path
) -> None:
    from qa.config import Settings

    settings = Settings(seeds_dir=sample_seeds, index_dir=tmp_path / "local")
    local_build(sample_seeds, tmp_path / "local", settings)
    spec = {
        "model": settings.model, "cluster": "local:2", "task_texts": 2, "reader": "auto",
        "out": str(tmp_path / "out.json"),
        "builds": [{"seeds": str(sample_seeds), "index": str(tmp_path / "cluster")}],
    }  # fmt: skip
    out = run_script(spec, ray_tmp)
    assert out["builds"][0]["embedded"] > 0
    assert_same_index(tmp_path / "local", tmp_path / "cluster", atol=1e-5)
    assert_same_answers(settings, tmp_path / "local", tmp_path / "cluster")


def test_a_local_build_never_imports_ray(sample_seeds: Path, tmp_path: Path) -> None:
    code = (
        "import sys; from qa.cli import main; import qa.serve.server, qa.pipeline, qa.store.index;"
        f"rc = main(['build', '-q', '--seeds', {str(sample_seeds)!r}, '--index', {str(tmp_path / 'i')!r},"
        " '--model', 'hash-64']);"
        "assert rc == 0, rc; assert 'ray' not in sys.modules, 'ray was imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_cluster_setting_is_checked(tmp_path: Path, sample_seeds: Path) -> None:
    from qa.cli import main
    from qa.config import Settings
    from qa.errors import ConfigError

    for good in ("", "local:2", "auto", "ray://head.example:10001", "10.0.0.5:6379"):
        assert Settings().replace(cluster=good).cluster == good
    for bad in ("local:0", "local:two", "cluster", "ray://", "local:2; rm"):
        with pytest.raises(ConfigError, match="local:N"):
            Settings().replace(cluster=bad)
    index = tmp_path / "index"
    assert main(["build", "--cluster", "nowhere", "--seeds", str(sample_seeds), "--index", str(index)]) == 2
    assert not index.exists()


def test_without_ray_a_cluster_build_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from qa.errors import ConfigError
    from qa.store import cluster

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'qa\[cluster\]'"):
        cluster.import_ray()


def test_a_ray_client_whose_server_fails_to_start_its_process_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qa.store import cluster

    monkeypatch.setattr(cluster.time, "sleep", lambda s: None)

    class FakeRay:
        def __init__(self, failures: list[Exception]) -> None:
            self.failures, self.calls, self.shutdowns = failures, 0, 0

        def init(self, address: str, **options: Any) -> None:
            self.calls += 1
            if self.failures:
                raise self.failures.pop(0)

        def shutdown(self) -> None:
            self.shutdowns += 1

    flaky = FakeRay([ConnectionAbortedError("Initialization failure from server:\nfork")] * 2)
    cluster._init_address(flaky, "ray://head:10001", {})
    assert (flaky.calls, flaky.shutdowns) == (3, 2)
    broken = FakeRay([ConnectionAbortedError("Initialization failure from server:\nfork")] * 3)
    with pytest.raises(ConnectionAbortedError):
        cluster._init_address(broken, "ray://head:10001", {})
    assert broken.calls == cluster.CONNECT_ATTEMPTS
    refused = FakeRay([ConnectionAbortedError("the token was refused")])  # not worth another try
    with pytest.raises(ConnectionAbortedError):
        cluster._init_address(refused, "ray://head:10001", {})
    assert refused.calls == 1


def test_warnings_keep_the_order_of_a_local_read() -> None:
    from qa.store.cluster import _merge_warnings

    listing = ["skipped a.xyz: unsupported", "skipped c.xyz: unsupported", "skipped z.bin: unsupported"]
    # files b and d were listed after 1 and 2 listing warnings; b was skipped, d had a note
    merged = _merge_warnings(listing, [1, 2], [["skipped b.txt: empty"], ["d.pdf: page 2 scanned"]])
    assert merged == [listing[0], "skipped b.txt: empty", listing[1], "d.pdf: page 2 scanned", listing[2]]


if __name__ == "__main__":
    _script(json.loads(sys.argv[1]))
