"""ScaNN against exact search on one catalogue: recall of the approximation and speed of both."""

from __future__ import annotations

import numpy as np

from recjax.retrieval.exact import exact_top_k
from recjax.retrieval.scann_index import (
    ScannConfig,
    ScannIndex,
    build_scann_index,
    measure_qps,
    recall_vs_exact,
)


def benchmark_retrieval(
    items_nd: np.ndarray, queries_qd: np.ndarray, config: ScannConfig, *, k: int = 10
) -> tuple[dict, ScannIndex]:
    """Builds the ScaNN index over `items_nd` and measures it against exact top-k."""
    index = build_scann_index(items_nd, config)
    _, exact_qk = exact_top_k(queries_qd, items_nd, k)
    approx_qk, _ = index.search(queries_qd, k)
    results = {
        f"scann_recall@{k}_vs_exact": recall_vs_exact(approx_qk, np.asarray(exact_qk)),
        "scann_qps": measure_qps(lambda queries: index.search(queries, k), queries_qd),
        "exact_qps": measure_qps(lambda queries: exact_top_k(queries, items_nd, k), queries_qd),
        "num_items": int(items_nd.shape[0]),
        "num_queries": int(queries_qd.shape[0]),
        "index": index.describe(),
    }
    return results, index
