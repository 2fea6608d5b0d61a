"""`recjax serve` on a real bundle, through a real client, then `recjax drift` on its log."""

import json
import subprocess
import sys

import httpx
import numpy as np
import pytest

from recjax.data.splits import Role
from recjax.serving.local_server import local_server


@pytest.fixture(scope="module")
def server(smoke_run, tmp_path_factory):
    _, _, bundle = smoke_run
    log = tmp_path_factory.mktemp("serve") / "requests.jsonl"
    with local_server(bundle, log) as url:
        yield url, log


def test_known_user_session_and_cold_start_over_http(server):
    url, _ = server
    known = httpx.post(f"{url}/recommend", json={"user": "12347", "k": 5}).json()
    assert known["path"] == "personalized" and len(known["items"]) == 5
    assert all(item["text"] for item in known["items"])
    session = httpx.post(
        f"{url}/recommend", json={"user": "someone-new", "recent_items": ["22423"], "k": 5}
    ).json()
    assert session["path"] == "session"
    cold = httpx.post(f"{url}/recommend", json={"k": 5}).json()
    assert cold["path"] == "popularity"


def test_bad_requests_get_4xx_and_the_server_keeps_serving(server):
    url, _ = server
    assert (
        httpx.post(
            f"{url}/recommend", content=b"{oops", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    bad_k = httpx.post(f"{url}/recommend", json={"user": "12347", "k": -1})
    assert bad_k.status_code == 422 and bad_k.json()["field"] == "k"
    assert httpx.post(f"{url}/recommend", json={"user": "12347"}).status_code == 200


def test_drift_report_joins_the_log_with_held_out_outcomes(server, smoke_run, tmp_path):
    url, log = server
    data, _, _ = smoke_run
    queries = data.eval_set(Role.TEST)
    users = data.users.raw(data.timelines.users[data.timelines.row_of(queries.positions)])[:30]
    for user in users:
        assert httpx.post(f"{url}/recommend", json={"user": str(user), "k": 50}).status_code == 200
    outcomes = tmp_path / "outcomes.csv"
    items = data.items.raw(queries.targets[:30, 0])
    outcomes.write_text(
        "user,item\n" + "".join(f"{u},{i}\n" for u, i in zip(users, items, strict=True))
    )
    report_file = tmp_path / "drift.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "recjax.cli",
            "drift",
            "--log",
            str(log),
            "--outcomes",
            str(outcomes),
            "--out",
            str(report_file),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(report_file.read_text())
    # Recompute the hit rate from the log itself: a response with a user is a hit when one
    # of its items is among that user's outcomes (anonymous requests are left out).
    wanted = {str(u): str(i) for u, i in zip(users, items, strict=True)}
    responses = [json.loads(line) for line in log.read_text().splitlines()]
    hits = [
        wanted.get(r["user"]) in {item["item"] for item in r["items"]}
        for r in responses
        if r["user"] is not None
    ]
    assert report["counts"]["requests"] == len(responses)
    np.testing.assert_allclose(report["hit_rate"]["overall"]["hit_rate"], np.mean(hits))
    assert report["hit_rate"]["overall"]["requests"] == len(hits)
    assert "hit" in result.stdout.lower()
