"""Serving latency and throughput: the embedded dataset's bundle and a synthetic 1M-item one.

    recjax train                                   # once: the run this exports
    python experiments/serving_benchmark.py [--workdir runs/online_retail]

For each bundle: in-process `Recommender.recommend` latency (p50/p99 per stage), then a
real `recjax serve` process on localhost driven by `serving_load.run_load` (16 clients,
2,000 requests: 80% known customers, 20% unknown users with a session) — latency
percentiles, throughput, errors and the request-log check. The synthetic catalogue keeps
the trained user tower and puts 1,000,000 items in the index (real item vectors plus
noise, renormalised), so retrieval works at that scale. Writes
experiments/results/serving.json; the README's serving table quotes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_tables import replace_table  # noqa: E402
from serving_load import run_load  # noqa: E402

from recjax.export.bundle import read_bundle, write_bundle  # noqa: E402
from recjax.export.exporter import export_run  # noqa: E402
from recjax.retrieval.scann_index import (  # noqa: E402
    ScannConfig,
    build_scann_index,
    save_scann_index,
)
from recjax.serving.local_server import local_server  # noqa: E402
from recjax.serving.recommender import Recommender, ServingConfig  # noqa: E402
from recjax.serving.requests import RecommendRequest  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "serving.json"


def synthetic_bundle(real: Path, out: Path, num_items: int, seed: int = 0) -> Path:
    """`real`'s user tower over `num_items` items near the real ones (for scale tests)."""
    contents = read_bundle(real)
    config = json.loads(contents.config_json)
    rng = np.random.default_rng(seed)
    source = rng.integers(0, len(contents.item_embeddings), size=num_items)
    vectors = contents.item_embeddings[source] + rng.normal(
        scale=0.1, size=(num_items, contents.item_embeddings.shape[1])
    ).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = build_scann_index(vectors, ScannConfig(**config["scann"]))
    synthetic = dataclasses.replace(
        contents,
        model_version=f"{contents.model_version}+synthetic{num_items}",
        catalogue_ids=np.char.add("syn-", np.arange(num_items).astype(str)),
        item_text=np.char.add("synthetic ~ ", contents.item_text[source].astype(str)),
        popularity=contents.popularity[source],
        item_embeddings=vectors,
    )
    with tempfile.TemporaryDirectory() as scann_dir:
        save_scann_index(index, scann_dir)
        return write_bundle(dataclasses.replace(synthetic, scann_dir=Path(scann_dir)), out)


def request_bodies(bundle: Path, count: int = 500, seed: int = 0) -> list[dict]:
    contents = read_bundle(bundle)
    rng = np.random.default_rng(seed)
    users = contents.vocab["users"]
    items = contents.vocab["items"]
    bodies = []
    for index in range(count):
        if index % 5:
            bodies.append({"user": str(users[rng.integers(len(users))]), "k": 10})
        else:
            session = [str(i) for i in items[rng.integers(len(items), size=3)]]
            bodies.append({"user": f"new-{index}", "recent_items": session, "k": 10})
    return bodies


def in_process_latency(bundle: Path, bodies: list[dict]) -> dict:
    """Per-stage and total latency of Recommender.recommend, no HTTP, cache off."""
    recommender = Recommender(bundle, ServingConfig(cache_seconds=0))
    requests = [
        RecommendRequest(user=b["user"], recent_items=tuple(b.get("recent_items", ())), k=b["k"])
        for b in bodies
    ]
    for request in requests[:20]:  # warm-up (first calls compile the user tower)
        recommender.recommend(request)
    stages: dict[str, list[float]] = {}
    totals = []
    for request in requests * 2:
        response = recommender.recommend(request)
        totals.append(response["latency_ms"])
        for stage in response["stages"]:
            stages.setdefault(stage["name"], []).append(stage["latency_ms"])
    summary = {"requests": len(totals), **_percentiles("total", totals)}
    for name, values in stages.items():
        summary.update(_percentiles(name, values))
    return summary


def served_load(
    bundle: Path, bodies: list[dict], workdir: Path, *, clients: int, requests: int
) -> dict:
    """`recjax serve` driven by run_load: one client (latency without queueing), then
    `clients` at once (throughput)."""
    log = workdir / "requests.jsonl"
    with local_server(bundle, log, cache_seconds=0) as url:
        return {
            f"{n}_clients": run_load(url, bodies, clients=n, requests=count, request_log=log)
            for n, count in ((1, requests // 4), (clients, requests))
        }


def _percentiles(name: str, values: list[float]) -> dict:
    p50, p99 = np.percentile(values, [50, 99])
    return {f"{name}_p50_ms": float(p50), f"{name}_p99_ms": float(p99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/online_retail", help="a trained run")
    parser.add_argument("--synthetic-items", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        real = export_run(args.workdir, scratch / "bundle")
        start = time.perf_counter()
        synthetic = synthetic_bundle(real, scratch / "synthetic", args.synthetic_items)
        build_seconds = time.perf_counter() - start
        for name, bundle in (("embedded", real), ("synthetic", synthetic)):
            bodies = request_bodies(bundle)
            catalogue = len(read_bundle(bundle).catalogue_ids)
            print(f"== {name}: {catalogue:,} items", flush=True)
            results[name] = {
                "catalogue_items": catalogue,
                "in_process": in_process_latency(bundle, bodies),
                "http": served_load(
                    bundle, bodies, scratch / name, clients=args.clients, requests=args.requests
                ),
            }
            print(json.dumps(results[name], indent=2), flush=True)
        results["synthetic"]["bundle_build_seconds"] = build_seconds
    results["command"] = "python experiments/serving_benchmark.py"
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    replace_table("serving", table(results))
    print(f"wrote {RESULTS} and the README serving table")


def table(results: dict) -> str:
    """README rows: per bundle, in-process stage latencies and HTTP latency/throughput."""
    rows = [
        "| catalogue | in-process p50 / p99 | user tower p50 | retrieval p50 / p99 | "
        "HTTP, 1 client: p50 / p99 | HTTP, 16 clients: p50 / p99, throughput | errors, "
        "lost log lines |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name in ("embedded", "synthetic"):
        run = results[name]
        local, one, many = run["in_process"], run["http"]["1_clients"], run["http"]["16_clients"]
        errors = one["errors"] + many["errors"]
        lost = sum(r["ok"] - r["logged_lines"] for r in (one, many))
        rows.append(
            f"| {run['catalogue_items']:,} items | {local['total_p50_ms']:.1f} / "
            f"{local['total_p99_ms']:.1f} ms | {local['user_tower_p50_ms']:.1f} ms | "
            f"{local['retrieval_p50_ms']:.1f} / {local['retrieval_p99_ms']:.1f} ms | "
            f"{one['p50_ms']:.1f} / {one['p99_ms']:.1f} ms | {many['p50_ms']:.0f} / "
            f"{many['p99_ms']:.0f} ms, {many['requests_per_s']:,.0f} req/s | {errors}, {lost} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
