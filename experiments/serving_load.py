"""Load test of a running `recjax` HTTP server on localhost: latency, throughput, lost logs.

    python experiments/serving_load.py --url http://127.0.0.1:8000 --bodies bodies.jsonl \
        --log runs/online_retail/requests.jsonl

`bodies.jsonl` holds one /recommend request body per line, sent in turn (cycling). With
`--log`, the server's request log (and its rotated files) must grow by exactly the number
of 200 responses, each new line a JSON object (size the rotation so that no backup falls
off during the run, or the check reports the loss). Bounded: a fixed request count, a wall-clock
limit, and only loopback hosts. Exit status 1 if any request failed or the log check did.
Results for the HTTP layer alone (the fake service of tests/serving/test_http.py, k=10,
server and load generator sharing 2 CPUs): 16 clients x 2,000 requests, 760-830 requests/s,
p50 19-21 ms, p95 29-32 ms, p99 36-43 ms (queueing: the server is saturated), no lost log
line; 1 client x 500 requests, 400 requests/s, p50 1.7 ms, p99 9 ms.
"""

import argparse
import http.client
import ipaddress
import itertools
import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def run_load(
    url: str,
    bodies: Sequence[Mapping[str, Any]] | Callable[[int], Mapping[str, Any]],
    *,
    clients: int = 16,
    requests: int = 2000,
    max_seconds: float = 300.0,
    request_log: str | Path | None = None,
) -> dict[str, Any]:
    """Sends `requests` POST /recommend from `clients` concurrent keep-alive connections.

    Args:
      url: the server's base URL; its host must be loopback (127.0.0.0/8, ::1, localhost).
      bodies: request bodies, used in turn, or a function from request index to body.
      clients: concurrent connections, each sending its next request when the last answers.
      requests: how many requests in all (fewer if `max_seconds` runs out first).
      max_seconds: no request starts after this many seconds.
      request_log: the server's request log; checks it grew by one line per 200 response.

    Returns:
      A flat dict: counts, status counts, latency percentiles (ms), requests/s, log check.
    """
    host, port = _loopback_address(url)
    body_at = bodies if callable(bodies) else (lambda index: bodies[index % len(bodies)])
    logged_before = _count_log_lines(request_log) if request_log else None
    next_index = itertools.count()  # Shared by the client threads; next() is atomic in CPython.
    lock = threading.Lock()
    latencies_s: list[float] = []
    statuses: Counter[str] = Counter()
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        try:
            while (index := next(next_index)) < requests and time.monotonic() < deadline:
                payload = json.dumps(body_at(index)).encode()
                start = time.perf_counter()
                try:
                    connection.request(
                        "POST", "/recommend", payload, {"Content-Type": "application/json"}
                    )
                    response = connection.getresponse()
                    response.read()
                    outcome = str(response.status)
                except (OSError, http.client.HTTPException) as error:
                    connection.close()  # Reconnects on the next request.
                    outcome = type(error).__name__
                elapsed = time.perf_counter() - start
                with lock:
                    latencies_s.append(elapsed)
                    statuses[outcome] += 1
        finally:
            connection.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall_s = time.perf_counter() - start

    sent = sum(statuses.values())
    ok = statuses.get("200", 0)
    p50, p95, p99 = np.percentile(latencies_s, [50, 95, 99]) * 1e3 if sent else (np.nan,) * 3
    result = {
        "requests": sent,
        "ok": ok,
        "errors": sent - ok,
        "statuses": dict(sorted(statuses.items())),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "requests_per_s": sent / wall_s,
        "wall_s": wall_s,
    }
    if request_log:
        logged = _count_log_lines(request_log) - logged_before
        result.update(
            logged_lines=logged, log_ok=logged == ok and _newest_lines_parse(request_log, ok)
        )
    return result


def _loopback_address(url: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"expected http://HOST:PORT, found {url!r}")
    host = parts.hostname
    if host != "localhost" and not _is_loopback_ip(host):
        raise ValueError(f"refusing to load {host!r}: only loopback hosts are load-tested")
    return host, parts.port or 80


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # A name other than localhost.
        return False


def _log_files(request_log: str | Path) -> list[Path]:
    """The log and its rotated copies, newest first (requests.jsonl, .1, .2, ...)."""
    path = Path(request_log)
    rotated = [p for p in path.parent.glob(f"{path.name}.*") if p.suffix[1:].isdigit()]
    rotated.sort(key=lambda p: int(p.suffix[1:]))
    return [p for p in [path, *rotated] if p.exists()]


def _count_log_lines(request_log: str | Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in _log_files(request_log))


def _newest_lines_parse(request_log: str | Path, count: int) -> bool:
    """The newest `count` lines are each one JSON object (no torn or interleaved writes)."""
    lines: list[bytes] = []
    for path in _log_files(request_log):
        if len(lines) >= count:
            break
        lines = path.read_bytes().splitlines() + lines
    try:
        return all(isinstance(json.loads(line), dict) for line in lines[len(lines) - count :])
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    parser.add_argument("--bodies", required=True, help="JSONL file of /recommend bodies")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--requests", type=int, default=2000, help="requests in all")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="wall-clock limit")
    parser.add_argument("--log", help="the server's request log, to check for lost lines")
    args = parser.parse_args(argv)
    bodies = [json.loads(line) for line in Path(args.bodies).read_text().splitlines() if line]
    if not bodies:
        parser.error(f"{args.bodies} holds no request bodies")
    result = run_load(
        args.url,
        bodies,
        clients=args.clients,
        requests=args.requests,
        max_seconds=args.max_seconds,
        request_log=args.log,
    )
    print(
        f"{result['requests']} requests, {result['errors']} errors {result['statuses']}, "
        f"{result['requests_per_s']:.0f} requests/s; latency ms "
        f"p50 {result['p50_ms']:.1f} p95 {result['p95_ms']:.1f} p99 {result['p99_ms']:.1f}"
    )
    if args.log:
        verdict = "ok" if result["log_ok"] else "MISMATCH (lost, extra or torn lines)"
        print(f"request log: {result['logged_lines']} new lines for {result['ok']} 200s: {verdict}")
    return 0 if result["errors"] == 0 and result.get("log_ok", True) else 1


if __name__ == "__main__":
    raise SystemExit(main())
