"""Load: 32 concurrent clients ask the real app (real models) for a minute; zero errors.

The app runs as ``python app.py`` in its own process (so the clients do not share its
interpreter) on a copy of the seeds, with the rate limit off: every client comes from
127.0.0.1, one address, and the app must not 429 its own load test. The load comes from
``scripts/loadtest.py``, the same script as for manual runs. ``QA_LOAD_SECONDS`` sets
the duration (default 60) and ``QA_LOAD_CLIENTS`` the clients (default 32). The
figures are printed and written to ``artifacts/loadtest.json``; no timing is asserted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qa.serve.server import bind
from tests.app_fixtures import ROOT, make_seeds

pytestmark = [pytest.mark.slow, pytest.mark.model]
SECONDS = float(os.environ.get("QA_LOAD_SECONDS", "60"))
CLIENTS = int(os.environ.get("QA_LOAD_CLIENTS", "32"))


def test_concurrent_clients_get_answers_and_no_errors(tmp_path: Path) -> None:
    seeds = make_seeds(tmp_path)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    env = {
        **os.environ,
        "QA_RATE_LIMIT_PER_MINUTE": "0",  # off: one address sends everything here
        "QA_WATCH_INTERVAL": "0",
        "QA_FEEDBACK_LOG": str(tmp_path / "feedback.jsonl"),
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("QA_MODEL", "QA_READER", "QA_ACCESS_TOKEN"):  # the shipped models, no token
        env.pop(name, None)
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--seeds", str(seeds),
           "--index", str(tmp_path / "index")]  # fmt: skip
    app = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert app.stdout is not None
        line = app.stdout.readline()
        assert line.strip() == f"Running on http://127.0.0.1:{port}/", app.stderr and app.stderr.read()
        load = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "loadtest.py"), "--url", f"http://127.0.0.1:{port}",
             "--clients", str(CLIENTS), "--seconds", str(SECONDS), "--json"],
            capture_output=True, text=True, timeout=SECONDS + 600,
        )  # fmt: skip
    finally:
        app.send_signal(signal.SIGINT)
        _, err = app.communicate(timeout=60)
    assert load.stdout, load.stderr
    result = json.loads(load.stdout)
    result["load_average"] = os.getloadavg()
    result["cpus"] = os.cpu_count()
    print(
        f"\nload test: {result['clients']} clients for {SECONDS:g} s: {result['requests']} requests, "
        f"{result['errors']} errors, {result['throughput']} answers/s; latency ms p50 {result['p50_ms']}, "
        f"p95 {result['p95_ms']}, p99 {result['p99_ms']}, max {result['max_ms']}"
    )
    out = ROOT / "artifacts"
    out.mkdir(exist_ok=True)
    (out / "loadtest.json").write_text(json.dumps(result, indent=1) + "\n")
    assert result["errors"] == 0, result["error_samples"]
    assert result["requests"] >= CLIENTS and result["statuses"] == {"200": result["requests"]}
    assert load.returncode == 0
    assert "Traceback" not in err, err
