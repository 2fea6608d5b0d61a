"""The HTTP endpoint, through a real uvicorn process on localhost serving a fake service.

Run as a script, this file serves `FakeService` with the ServerConfig given as JSON in argv.
"""

import contextlib
import dataclasses
import importlib.util
import itertools
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from recjax.serving.http import LATENCY_BUCKETS_S, ServerConfig, serve
from recjax.serving.requests import RecommendRequest

REPO = Path(__file__).resolve().parents[2]
VERSION = "fake@1-00000000"


class FakeService:
    """Deterministic responses; fails for user "boom", and if two calls ever overlap."""

    model_version = VERSION

    def __init__(self):
        self._inside = 0
        self._served = itertools.count()

    def recommend(self, request: RecommendRequest) -> dict:
        self._inside += 1
        try:
            if self._inside > 1:
                raise RuntimeError("two concurrent calls into the service")
            if request.user == "boom":
                raise RuntimeError("fake failure")
            time.sleep(0.0002)  # Lets another thread in, were the server not serialising calls.
            return fake_response(request, f"req-{next(self._served)}")
        finally:
            self._inside -= 1


def fake_response(request: RecommendRequest, request_id: str) -> dict:
    path = "personalized" if request.user else "session" if request.recent_items else "popularity"
    items = [
        {
            "item": str(100 + i),
            "text": f"ITEM {i}",
            "score": 1 / (i + 2),
            "scores": {"retrieval": 1 / (i + 1), "pre_ranking": 1 / (i + 2)},
        }
        for i in range(request.k)
    ]
    return {
        "request_id": request_id,
        "model_version": VERSION,
        "user": request.user,
        "path": path,
        "items": items,
        "stages": [{"name": "retrieval", "candidates": 1000, "latency_ms": 0.1}],
        "latency_ms": 0.2,
    }


@dataclasses.dataclass(frozen=True, kw_only=True)
class Server:
    url: str  # Base URL.
    port: int  # TCP port it listens on.
    stderr: Path  # The process's stderr (and stdout).
    request_log: Path  # Its request log.


@contextlib.contextmanager
def running_server(workdir: Path, **config) -> Iterator[Server]:
    """Starts this file as a server process on a free port; stops it on exit."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = workdir / "requests.jsonl"
    config = {"port": port, "request_log": str(log), **config}
    stderr = workdir / "server.stderr"
    with open(stderr, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, __file__, json.dumps(config)], stdout=output, stderr=output
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start:\n{stderr.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        yield Server(url=url, port=port, stderr=stderr, request_log=log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("server")) as started:
        yield started


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http_client:
        yield http_client


def post(client: httpx.Client, server: Server, body: object) -> httpx.Response:
    return client.post(f"{server.url}/recommend", json=body)


def load_generator():
    spec = importlib.util.spec_from_file_location(
        "serving_load", REPO / "experiments" / "serving_load.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_binds_localhost_by_default(server):
    assert ServerConfig().host == "127.0.0.1"
    # The server was started without a host: only 127.0.0.1 listens on its port.
    listening = []
    for table in [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]:
        for line in table.read_text().splitlines()[1:] if table.exists() else []:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] == "0A" and int(port, 16) == server.port:  # 0A: LISTEN
                listening.append(address)
    assert listening == ["0100007F"]  # 127.0.0.1, little-endian hex.
    assert f"at http://127.0.0.1:{server.port}" in server.stderr.read_text()


def test_recommend_returns_the_service_response(server, client):
    response = post(client, server, {"user": "12347", "k": 3})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    request_id = body["request_id"]
    assert body == fake_response(RecommendRequest(user="12347", k=3), request_id)


@pytest.mark.parametrize(
    "content, content_type",
    [
        (b'{"user": ', "application/json"),
        (b"\xff\xfe{", "application/json"),
        (b"[" * 40_000, "application/json"),  # Nested past Python's recursion limit.
        (b'{"user": "12347"}', "text/plain"),
        (b'{"user": "12347"}', None),
    ],
    ids=["truncated", "not-utf8", "deep", "text-plain", "no-content-type"],
)
def test_unreadable_bodies_are_400(server, client, content, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.post(f"{server.url}/recommend", content=content, headers=headers)
    assert response.status_code == 400
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize(
    "body, field",
    [
        ({"k": 0}, "k"),
        ({"k": "5"}, "k"),
        ({"user": "1", "colour": "red"}, "colour"),
        ({"recent_items": "22423"}, "recent_items"),
        ({"recent_items": ["22423", ""]}, "recent_items[1]"),
        ([1, 2], "body"),
    ],
)
def test_invalid_requests_are_422_naming_the_field(server, client, body, field):
    response = post(client, server, body)
    assert response.status_code == 422
    assert response.json()["field"] == field
    assert field in response.json()["error"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_huge_bodies_are_413(server, client, chunked):
    huge = json.dumps({"recent_items": ["22423"] * 200_000}).encode()  # ~1.8 MB
    content = (huge[i : i + 8192] for i in range(0, len(huge), 8192)) if chunked else huge
    response = client.post(
        f"{server.url}/recommend", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == {"error": "body larger than 65536 bytes"}
    assert post(client, server, {"k": 1}).status_code == 200


def test_service_failure_is_500_and_the_server_keeps_serving(server, client):
    response = post(client, server, {"user": "boom"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (logged by the server)"}
    assert post(client, server, {"user": "12347"}).status_code == 200
    logged = server.stderr.read_text()
    assert "POST /recommend failed" in logged
    assert "Traceback" in logged
    assert "RuntimeError: fake failure" in logged


def test_healthz(server, client):
    response = client.get(f"{server.url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model_version": VERSION}


KNOWN_SEQUENCE = [  # (body, status): sent in order to a fresh server.
    ({"user": "12347", "k": 2}, 200),
    ({"user": "12348"}, 200),
    ({"recent_items": ["22423", 85123]}, 200),
    ({}, 200),
    (b"{not json", 400),
    ({"k": 0}, 422),
    ({"user": "boom"}, 500),
]


@pytest.fixture(scope="module")
def known_sequence(tmp_path_factory) -> dict:
    """A fresh server after KNOWN_SEQUENCE, a 404 and a /healthz: responses, metrics, log."""
    workdir = tmp_path_factory.mktemp("known")
    with running_server(workdir) as started, httpx.Client(timeout=10) as http_client:
        start = time.time()
        responses = []
        for body, status in KNOWN_SEQUENCE:
            if isinstance(body, bytes):
                response = http_client.post(
                    f"{started.url}/recommend",
                    content=body,
                    headers={"content-type": "application/json"},
                )
            else:
                response = post(http_client, started, body)
            assert response.status_code == status, response.text
            responses.append(response.json())
        assert http_client.get(f"{started.url}/nowhere").status_code == 404
        assert http_client.get(f"{started.url}/healthz").status_code == 200
        metrics = http_client.get(f"{started.url}/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        return {
            "start": start,
            "end": time.time(),
            "responses": responses,
            "metrics": metrics.text,
            "log": started.request_log.read_text().splitlines(),
        }


def samples(metrics_text: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} of a Prometheus text exposition."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
    }


def test_metrics_count_the_known_sequence(known_sequence):
    values = samples(known_sequence["metrics"])

    def requests(endpoint, status):
        labels = frozenset({"endpoint": endpoint, "status": status}.items())
        return values.get(("recjax_http_requests_total", labels), 0)

    assert requests("/recommend", "200") == 4
    assert requests("/recommend", "400") == 1
    assert requests("/recommend", "422") == 1
    assert requests("/recommend", "500") == 1
    assert requests("other", "404") == 1
    assert requests("/healthz", "200") == 2  # The readiness check and ours.
    assert requests("/metrics", "200") == 0  # Counted once its response is out.

    def latency(sample, **labels):
        key = frozenset({"endpoint": "/recommend", **labels}.items())
        return values[(f"recjax_http_request_duration_seconds_{sample}", key)]

    buckets = [latency("bucket", le=str(bound)) for bound in LATENCY_BUCKETS_S]
    assert buckets == sorted(buckets)
    assert latency("bucket", le="+Inf") == latency("count") == 7
    assert 0 < latency("sum") < 7 * LATENCY_BUCKETS_S[-1]

    paths = {
        dict(labels)["path"]: value
        for (name, labels), value in values.items()
        if name == "recjax_recommendations_total"
    }
    assert paths == {"personalized": 2, "session": 1, "popularity": 1}


def test_request_log_has_one_line_per_200(known_sequence):
    served = [
        response
        for response, (_, status) in zip(known_sequence["responses"], KNOWN_SEQUENCE, strict=True)
        if status == 200
    ]
    records = [json.loads(line) for line in known_sequence["log"]]
    assert len(records) == len(served) == 4
    for record, response in zip(records, served, strict=True):
        assert known_sequence["start"] <= record.pop("ts") <= known_sequence["end"]
        for item in response["items"]:
            del item["text"]
        assert record == response
        assert all({"item", "scores"} <= set(item) for item in record["items"])


def test_log_rotation_loses_no_line_under_concurrency(tmp_path):
    load = load_generator()
    bodies = [{"user": "12347", "k": 3}, {"recent_items": ["22423"], "k": 2}, {"k": 1}]
    max_bytes = 64 * 1024
    with running_server(tmp_path, log_max_bytes=max_bytes, log_backups=100) as started:
        result = load.run_load(
            started.url, bodies, clients=16, requests=16 * 200, request_log=started.request_log
        )
    assert result["errors"] == 0, result  # Also: the service was never entered concurrently.
    assert result["ok"] == result["logged_lines"] == 3200
    assert result["log_ok"]
    files = sorted(tmp_path.glob("requests.jsonl*"))
    assert started.request_log.with_name("requests.jsonl.1") in files
    assert all(path.stat().st_size <= max_bytes for path in files)
    request_ids = [
        json.loads(line)["request_id"] for path in files for line in path.read_text().splitlines()
    ]
    assert sorted(request_ids) == sorted(f"req-{i}" for i in range(3200))


@pytest.mark.parametrize("url", ["http://10.0.0.1:8000", "http://example.com", "ftp://localhost"])
def test_load_generator_targets_only_loopback(url):
    with pytest.raises(ValueError):
        load_generator().run_load(url, [{}], requests=1)


if __name__ == "__main__":
    serve(FakeService(), ServerConfig(**json.loads(sys.argv[1])))
