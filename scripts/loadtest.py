"""Load test: concurrent clients ask questions for a while; prints throughput and latency.

    python scripts/loadtest.py --url http://127.0.0.1:7860 --clients 32 --seconds 60

Each client is a thread with its own keep-alive connection, sending ``POST /api/ask``
(or ``--path /api/search``) back to back: a closed loop, so the figures are what the
server sustains with that many users waiting on it. Any answer other than 200 counts
as an error. Bounded in time (``--seconds``) and count (``--max-requests``), and
loopback only: it refuses any host but 127.0.0.1, ::1 or localhost. Exit code 1 when
any request failed. The app's rate limit counts every client here as one address:
start it with ``QA_RATE_LIMIT_PER_MINUTE=0`` (off) or a limit above the load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

LOOPBACK = {"127.0.0.1", "::1", "localhost"}

#: Questions about the shipped seed article, a follow-up, and ones it cannot answer.
QUESTIONS: list[dict[str, Any]] = [
    {"question": "Which missile system is Ukraine expected to deploy?"},
    {"question": "How much security assistance has the United States provided to Ukraine?"},
    {"question": "Who encouraged deeper strikes inside Russia?"},
    {"question": "Which troops is Russia allegedly deploying?"},
    {"question": "What did President Biden authorize?"},
    {"question": "And since when?", "history": ["How much aid has the US given to Ukraine?"]},
    {"question": "What is the boiling point of mercury?"},
    {"question": "Who won the 1998 football world cup?"},
]


@dataclass
class Result:
    clients: int
    seconds: float  # wall time from the first request to the last answer
    requests: int
    errors: int
    throughput: float  # successful answers per second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    statuses: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(p / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise SystemExit(f"error: {url} is not a loopback address; this load test only targets 127.0.0.1")


def run(
    url: str,
    clients: int = 32,
    seconds: float = 60.0,
    *,
    path: str = "/api/ask",
    token: str = "",
    max_requests: int = 1_000_000,
    timeout: float = 120.0,
    warmup: int = 2,
    questions: list[dict[str, Any]] | None = None,
) -> Result:
    """Run the load and return its figures (see the module docstring)."""
    check_loopback(url)
    questions = questions or QUESTIONS
    headers = {"authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, timeout=timeout, headers=headers) as http:
        for i in range(warmup):  # lazy model loads are not what this measures
            try:
                r = http.post(path, json=questions[i % len(questions)])
            except httpx.HTTPError as exc:
                raise SystemExit(f"error: cannot reach {url}: {exc}") from None
            if r.status_code != 200:
                raise SystemExit(f"error: {path} answered {r.status_code}: {r.text[:200]}")
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    samples: list[str] = []
    issued = 0
    start = time.perf_counter()
    deadline = start + seconds

    def client(n: int) -> None:
        nonlocal issued
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        with httpx.Client(base_url=url, timeout=timeout, headers=headers, limits=limits) as http:
            i = n
            while time.perf_counter() < deadline:
                with lock:
                    if issued >= max_requests:
                        return
                    issued += 1
                body = questions[i % len(questions)]
                i += 1
                t0 = time.perf_counter()
                try:
                    r = http.post(path, json=body)
                    status, detail = str(r.status_code), r.text[:200]
                except httpx.HTTPError as exc:
                    status, detail = type(exc).__name__, str(exc)[:200]
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
                    statuses[status] += 1
                    if status != "200" and len(samples) < 5:
                        samples.append(f"{status}: {detail}")

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ok = statuses.get("200", 0)
    ms = sorted(v * 1000 for v in latencies)
    return Result(
        clients=clients,
        seconds=round(wall, 2),
        requests=len(ms),
        errors=len(ms) - ok,
        throughput=round(ok / wall, 2) if wall else 0.0,
        p50_ms=round(percentile(ms, 50), 1),
        p95_ms=round(percentile(ms, 95), 1),
        p99_ms=round(percentile(ms, 99), 1),
        max_ms=round(ms[-1], 1) if ms else 0.0,
        mean_ms=round(sum(ms) / len(ms), 1) if ms else 0.0,
        statuses=dict(statuses),
        error_samples=samples,
    )


def report(result: Result) -> str:
    return (
        f"{result.clients} clients, {result.seconds:.1f} s: {result.requests} requests, "
        f"{result.errors} errors, {result.throughput:.2f} answers/s; latency ms "
        f"p50 {result.p50_ms:.0f}, p95 {result.p95_ms:.0f}, p99 {result.p99_ms:.0f}, "
        f"max {result.max_ms:.0f}, mean {result.mean_ms:.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:7860", help="the app (loopback only)")
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    ap.add_argument("--seconds", type=float, default=60.0, help="how long to send (default 60)")
    ap.add_argument("--max-requests", type=int, default=1_000_000, help="stop after this many")
    ap.add_argument("--path", default="/api/ask", choices=["/api/ask", "/api/search"])
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per request before an error")
    ap.add_argument("--token", default=os.environ.get("QA_ACCESS_TOKEN", ""), help="the access token")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.max_requests < 1:
        ap.error("--clients, --seconds and --max-requests must be positive")
    result = run(
        args.url,
        args.clients,
        args.seconds,
        path=args.path,
        token=args.token,
        max_requests=args.max_requests,
        timeout=args.timeout,
    )
    print(json.dumps(asdict(result)) if args.json else report(result))
    for sample in result.error_samples:
        print(f"error: {sample}", file=sys.stderr)
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
