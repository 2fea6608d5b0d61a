"""The funnel measured: list quality on held-out users, per-stage latency, stage throughput.

    recjax train && recjax train-ranker --workdir runs/online_retail   # once
    python experiments/funnel_benchmark.py [--workdir runs/online_retail] [--users 3000]

Quality: the run's test users (leave-last-out: each user's last purchase is the target,
as in the main job's evaluation), a seeded sample of `--users`. For each user the query
is made just before the test purchase: the two-tower's user vector from the history
before it, and the ranker's history features from the engagements strictly before it
(the ranker never trained on a run's validation or test events: `recjax.ranker_job`).
Lists compared at k = 10: popularity, retrieval alone (ScaNN order), pre-ranking's exact
order of the 200 candidates the ranker gets, the ranker's P(purchase) order and value
order (the funnel without re-ranking rules), and the whole funnel (MMR and at most 2
items per category); each with the user's earlier purchases removed (the funnel's rule)
and kept (the main job's protocol for this shop, where repeat purchases are most sales).
The ranker gets each candidate's retrieval score and rank exactly as `Funnel.recommend`
computes them.

Latency: `Funnel.recommend` in process on this CPU, user-vector cache off, 80% known
users and 20% unknown users with a 3-item session, for the embedded catalogue and for a
synthetic 1,000,000-item one (`serving_benchmark.synthetic_bundle`). Throughput: the
pre-ranker (dot products with the cached user vector) against the ranker (encoding plus
one forward pass), and the user side computed once against once per candidate.

Writes experiments/results/funnel.json and the README's funnel table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_tables import replace_table  # noqa: E402
from serving_benchmark import request_bodies, synthetic_bundle  # noqa: E402

from recjax.data.ranking_datasets import load_ranking_logs  # noqa: E402
from recjax.data.retrieval_negatives import retrieval_features  # noqa: E402
from recjax.data.splits import Role  # noqa: E402
from recjax.embeddings import user_vectors  # noqa: E402
from recjax.evaluation.metrics import metrics_from_ranks  # noqa: E402
from recjax.export.bundle import add_directory  # noqa: E402
from recjax.export.exporter import export_run  # noqa: E402
from recjax.export.ranker import RANKER_DIR, run_ranker_export  # noqa: E402
from recjax.main_job import load_config, load_data  # noqa: E402
from recjax.ranker_job import ranker_config  # noqa: E402
from recjax.serving.funnel import (  # noqa: E402
    Funnel,
    FunnelConfig,
    exact_scores,
    mmr,
    prerank,
    top,
    value,
)
from recjax.serving.recommender import ServingConfig  # noqa: E402
from recjax.serving.requests import RecommendRequest  # noqa: E402
from recjax.training.trainer import restore_trained  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "funnel.json"
K = 10
LISTS = ("popularity", "retrieval", "prerank", "ranker_purchase", "ranker_value", "funnel")
# Re-ranking rules compared on the same ranker scores: (MMR λ, items per category).
RULES = ((1.0, None), (0.9, None), (0.7, None), (1.0, 3), (1.0, 2), (0.9, 3), (0.7, 2))


def quality(workdir: Path, funnel: Funnel, num_users: int, seed: int = 0) -> dict:
    """NDCG@10 and Recall@10 of each list on a sample of the run's test users."""
    config, recommender, ranker = load_config(workdir), funnel.recommender, funnel.ranker
    data = load_data(config, say=lambda _: None)
    trained = restore_trained(config, data, workdir)
    queries = data.eval_set(Role.TEST)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(queries.positions), min(num_users, len(queries.positions))))
    positions = queries.positions[chosen]
    first = data.items.first_known
    targets = np.where(queries.targets[chosen] >= 0, queries.targets[chosen] - first, -1)
    seen = queries.seen[chosen]
    features = data.query_features(positions, events=True)
    vectors = user_vectors(trained.model, trained.state.params, features)
    users = data.users.raw(features["user"])
    times = data.timelines.timestamps[positions]
    rows_qn, _ = recommender.index.search(vectors, funnel.config.retrieval_candidates)
    engaged = load_ranking_logs(ranker_config(config).data, lambda _: None).engaged

    results = {}
    for exclude in (True, False):
        lists = {name: [] for name in LISTS}
        rule_lists: dict[tuple, list] = {}
        pairs_rows, pairs_scores, pairs_ranks = [], [], []
        for q in range(len(positions)):
            rows = rows_qn[q]
            consumed = seen[q][seen[q] >= 0] - first
            keep = ~np.isin(rows, consumed) if exclude else np.ones(len(rows), bool)
            popular = top(recommender.popularity, K + len(consumed) if exclude else K)
            popular = popular[~np.isin(popular, consumed)] if exclude else popular
            lists["popularity"].append(popular[:K])
            lists["retrieval"].append(rows[keep][:K])
            # As `Funnel.recommend`: ranks among everything retrieved, then the best
            # prerank_candidates of the items kept.
            exact, ranks = exact_scores(recommender.item_embeddings, vectors[q], rows)
            kept = np.flatnonzero(keep)[top(exact[keep], funnel.config.prerank_candidates)]
            pairs_rows.append(rows[kept])
            pairs_scores.append(exact[kept])
            pairs_ranks.append(ranks[kept])
        # One encoding of every (user, candidate) pair at its test time: history from the
        # engagement log strictly before it, side fields from the served tables, the
        # retrieval score and rank from the query.
        counts = [len(r) for r in pairs_rows]
        all_rows = np.concatenate(pairs_rows)
        candidates = ranker.features.candidates(
            ranker.encoder,
            np.repeat(users, counts),
            recommender.catalogue_ids[all_rows],
            np.repeat(times, counts),
            retrieval_features(np.concatenate(pairs_scores), np.concatenate(pairs_ranks)),
        )
        inputs = ranker.encoder.encode(candidates, engaged)
        scores = _in_chunks(ranker.score, inputs, len(all_rows))
        values = value(scores, funnel.config.task_weights)
        for start, rows in zip(np.cumsum([0, *counts[:-1]]), pairs_rows, strict=True):
            value_q = values[start : start + len(rows)]
            lists["prerank"].append(rows[:K])
            lists["ranker_purchase"].append(
                rows[top(scores["purchase"][start : start + len(rows)], K)]
            )
            lists["ranker_value"].append(rows[top(value_q, K)])
            ranked = top(value_q, funnel.config.rank_candidates)
            for rules in RULES:
                picked, _ = mmr(
                    value_q[ranked],
                    recommender.item_embeddings[rows[ranked]],
                    K,
                    mmr_lambda=rules[0],
                    categories=funnel.categories[rows[ranked]],
                    max_per_category=rules[1],
                )
                found = rows[ranked[picked]]
                rule_lists.setdefault(rules, []).append(found)
                if rules == (funnel.config.mmr_lambda, funnel.config.max_per_category):
                    lists["funnel"].append(found)
        protocol = "consumed_removed" if exclude else "consumed_kept"
        results[protocol] = {name: _metrics(found, targets) for name, found in lists.items()}
        results[protocol]["rules"] = [
            {"mmr_lambda": rules[0], "max_per_category": rules[1], **_metrics(found, targets)}
            for rules, found in rule_lists.items()
        ]
        print(protocol, json.dumps(results[protocol]), flush=True)
    return {"users": int(len(positions)), **results}


def _in_chunks(score: Callable, inputs: dict, n: int, chunk: int = 4096) -> dict:
    parts = [
        score({name: x[start : start + chunk] for name, x in inputs.items()})
        for start in range(0, n, chunk)
    ]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _metrics(found: list[np.ndarray], targets: np.ndarray) -> dict:
    """ndcg@10 and recall@10 of the lists `found` against `targets` [Q, T] (-1 padded)."""
    ranks = np.full(targets.shape, -1)
    for q, items in enumerate(found):
        for t, target in enumerate(targets[q]):
            if target >= 0:
                hit = np.flatnonzero(items == target)
                ranks[q, t] = hit[0] if len(hit) else K  # K: not in the list
    metrics = metrics_from_ranks(ranks, ks=(K,))
    return {f"ndcg@{K}": metrics[f"ndcg@{K}"], f"recall@{K}": metrics[f"recall@{K}"]}


def latency(bundle: Path, repeats: int = 2) -> dict:
    """Per-stage and total p50/p99 (ms) of `Funnel.recommend`, cache off."""
    funnel = Funnel(bundle, FunnelConfig(), ServingConfig(cache_seconds=0))
    requests = [
        RecommendRequest(user=b["user"], recent_items=tuple(b.get("recent_items", ())), k=K)
        for b in request_bodies(bundle, count=300)
    ]
    for request in requests[:30]:  # warm-up: compiles the towers for every batch size
        funnel.recommend(request)
    stages: dict[str, list[float]] = {}
    totals = []
    for request in requests * repeats:
        response = funnel.recommend(request)
        totals.append(response["latency_ms"])
        for stage in response["stages"]:
            stages.setdefault(stage["name"], []).append(stage["latency_ms"])
    summary = {
        "catalogue_items": len(funnel.recommender.catalogue_ids),
        "requests": len(totals),
        "total": _percentiles(totals),
    }
    summary |= {name: _percentiles(values) for name, values in stages.items()}
    summary["throughput"] = throughput(funnel)
    return summary


def throughput(funnel: Funnel, repeats: int = 200) -> dict:
    """Candidates/s of the pre-ranker and of the ranker on one known user's request."""
    recommender, config = funnel.recommender, funnel.config
    query, _ = recommender.query(RecommendRequest(user=str(recommender.users.ids[0])))
    vector, _ = recommender.user_vector(query)
    rows = np.sort(np.random.default_rng(0).choice(len(recommender.catalogue_ids), 1000, False))
    user = recommender.users.ids[0]
    items = recommender.catalogue_ids[rows[: config.prerank_candidates]]
    retrieval = retrieval_features(np.zeros(len(items)), np.arange(len(items)))
    inputs = funnel.ranker.features.encode(funnel.ranker.encoder, user, items, 0, retrieval)
    pre = _best(lambda: prerank(recommender.item_embeddings, vector, rows, 200), repeats)
    encode = _best(
        lambda: funnel.ranker.features.encode(funnel.ranker.encoder, user, items, 0, retrieval),
        repeats,
    )
    forward = _best(lambda: funnel.ranker.score(inputs), repeats)
    tower = _best(lambda: recommender.user_vector(query), repeats)
    return {
        "prerank_candidates_per_s": len(rows) / pre,
        "ranker_candidates_per_s": len(items) / (encode + forward),
        "ranker_forward_candidates_per_s": len(items) / forward,
        "prerank_ms": pre * 1e3,
        "ranker_encode_ms": encode * 1e3,
        "ranker_forward_ms": forward * 1e3,
        "user_tower_ms": tower * 1e3,
    }


def user_side_cost(workdir: Path, candidates: int = 1000, repeats: int = 20) -> dict:
    """Scoring `candidates` items for one user: the user tower once and a [N, d] @ [d]
    product, against the user tower run for every candidate (one batch of N copies)."""
    config = load_config(workdir)
    data = load_data(config, say=lambda _: None)
    trained = restore_trained(config, data, workdir)
    model, params = trained.model, trained.state.params
    positions, rows = data.latest_positions(data.users.ids[:1])
    one = data.query_features(positions, rows, events=True)
    many = {name: np.repeat(x, candidates, axis=0) for name, x in one.items()}
    dim = user_vectors(model, params, one).shape[1]
    items_nd = np.random.default_rng(0).normal(size=(candidates, dim)).astype(np.float32)
    cached = _best(lambda: items_nd @ user_vectors(model, params, one)[0], repeats)
    per_candidate = _best(
        lambda: np.einsum("nd,nd->n", items_nd, user_vectors(model, params, many)), repeats
    )
    return {
        "candidates": candidates,
        "cached_user_vector_ms": cached * 1e3,
        "user_side_per_candidate_ms": per_candidate * 1e3,
        "ratio": per_candidate / cached,
    }


def _best(call: Callable, repeats: int) -> float:
    """Seconds of the fastest of `repeats` calls after a warm-up (JAX results waited for)."""
    jax.block_until_ready(call())
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(call())
        best = min(best, time.perf_counter() - start)
    return best


def _percentiles(values: list[float]) -> dict:
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50_ms": float(p50), "p99_ms": float(p99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/online_retail"))
    parser.add_argument("--users", type=int, default=3000, help="test users for quality")
    parser.add_argument("--synthetic-items", type=int, default=1_000_000)
    args = parser.parse_args()
    if run_ranker_export(args.workdir) is None:
        sys.exit(f"{args.workdir} has no ranker: run recjax train-ranker --workdir {args.workdir}")
    start = time.perf_counter()
    results: dict = {"funnel_config": dataclasses.asdict(FunnelConfig())}
    with tempfile.TemporaryDirectory() as scratch:
        real = export_run(args.workdir, Path(scratch) / "bundle", say=lambda _: None)
        results["quality"] = quality(args.workdir, Funnel(real), args.users)
        results["user_side"] = user_side_cost(args.workdir)
        print(json.dumps(results["user_side"]), flush=True)
        results["embedded"] = latency(real)
        print("embedded", json.dumps(results["embedded"]), flush=True)
        synthetic = synthetic_bundle(real, Path(scratch) / "synthetic", args.synthetic_items)
        add_directory(synthetic, RANKER_DIR, real / RANKER_DIR)
        results["synthetic"] = latency(synthetic)
        print("synthetic", json.dumps(results["synthetic"]), flush=True)
    results["machine"] = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, {jax.device_count()} "
        f"{jax.default_backend()} device(s); jax {jax.__version__}"
    )
    results["seconds"] = time.perf_counter() - start
    results["command"] = "python experiments/funnel_benchmark.py"
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    replace_table("funnel", table(results))
    print(f"wrote {RESULTS} and the README funnel table ({results['seconds']:.0f} s)")


def table(results: dict) -> str:
    """README tables: list quality; per-stage latency; stage throughput."""
    quality = results["quality"]
    names = {
        "popularity": "popularity",
        "retrieval": "retrieval alone (ScaNN)",
        "prerank": "pre-ranking (exact dot product) of the ranker's 200 candidates",
        "ranker_purchase": "ranker's P(purchase) order",
        "ranker_value": "funnel without re-ranking rules (value order)",
        "funnel": "funnel (value + MMR λ = {mmr_lambda}, ≤ {max_per_category} per category)".format(
            **results["funnel_config"]
        ),
    }
    lines = [
        f"| list ({quality['users']:,} test users, k = 10) | earlier purchases removed: "
        "NDCG@10 / Recall@10 | kept: NDCG@10 / Recall@10 |",
        "|---|---:|---:|",
    ]
    for key, name in names.items():
        cells = [
            f"{quality[p][key]['ndcg@10']:.4f} / {quality[p][key]['recall@10']:.4f}"
            for p in ("consumed_removed", "consumed_kept")
        ]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "| re-ranking rules on the same ranker scores | removed: NDCG@10 / Recall@10 "
        "| kept: NDCG@10 / Recall@10 |",
        "|---|---:|---:|",
    ]
    for removed, kept in zip(
        quality["consumed_removed"]["rules"], quality["consumed_kept"]["rules"], strict=True
    ):
        cap = removed["max_per_category"]
        lines.append(
            f"| MMR λ = {removed['mmr_lambda']}, "
            f"{'no category cap' if cap is None else f'≤ {cap} per category'} | "
            f"{removed['ndcg@10']:.4f} / {removed['recall@10']:.4f} | "
            f"{kept['ndcg@10']:.4f} / {kept['recall@10']:.4f} |"
        )
    stages = ("user_tower", "retrieval", "consumed_removed", "pre_ranking", "ranking", "re_ranking")
    lines += [
        "",
        "| catalogue | "
        + " | ".join(stages)
        + " | whole request p50 / p99 | pre-ranker candidates/s | ranker candidates/s |",
        "|---|" + "---:|" * (len(stages) + 3),
    ]
    for name in ("embedded", "synthetic"):
        run = results[name]
        cells = [
            f"{run[s]['p50_ms']:.2f} / {run[s]['p99_ms']:.2f}" if s in run else "—" for s in stages
        ]
        speed = run["throughput"]
        lines.append(
            f"| {run['catalogue_items']:,} items | "
            + " | ".join(cells)
            + f" | **{run['total']['p50_ms']:.1f} / {run['total']['p99_ms']:.1f} ms** | "
            f"{speed['prerank_candidates_per_s'] / 1e6:.1f} M | "
            f"{speed['ranker_candidates_per_s'] / 1e3:.0f} k |"
        )
    side = results["user_side"]
    lines += [
        "",
        f"Stage cells: p50 / p99 ms. Scoring {side['candidates']:,} candidates with the user "
        f"vector computed once: {side['cached_user_vector_ms']:.2f} ms; with the user side "
        f"recomputed per candidate (one batch): {side['user_side_per_candidate_ms']:.2f} ms "
        f"({side['ratio']:.0f}×). {results['machine']}; `{results['command']}`.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
