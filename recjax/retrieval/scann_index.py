"""Approximate top-k by dot product with ScaNN, with defaults that adapt to catalogue size.

Also the two numbers that judge an approximate index: recall against exact search, and
queries per second. Shape letters: Q queries, N items, D embedding dim, K results.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import scann


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScannConfig:
    """How to build a ScaNN index; None fields adapt to the catalogue size N."""

    brute_force_below: int = 1_000  # Catalogues with fewer items are searched exactly.
    num_leaves: int | None = None  # Tree partitions; None = round(sqrt(N)). Capped at N.
    leaves_to_search: int | None = None  # Partitions searched; None = 10%, see min_points_searched.
    min_points_searched: int = 3_000  # Adaptive leaves_to_search covers at least this many items.
    dimensions_per_block: int = 2  # AH: dimensions quantised together per codebook.
    anisotropic_quantization_threshold: float = 0.2  # AH: ScaNN's anisotropic loss threshold.
    reorder: int | None = 100  # AH candidates re-scored exactly (raised to k); None = none.
    training_sample_size: int = 100_000  # Points sampled to train the tree and AH; capped at N.


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScannIndex:
    """A built ScaNN searcher over N item embeddings, with the parameters it was built with."""

    searcher: scann.scann_ops_pybind.ScannSearcher  # The pybind searcher.
    num_items: int  # N.
    num_leaves: int | None  # Tree partitions; None = brute force.
    leaves_to_search: int | None  # Partitions searched per query; None = brute force.
    config: ScannConfig  # What was asked for (the fields above are what was chosen).

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The (approximately) k best items by dot product for each query, best first.

        Args:
          queries: [Q, D] float32 query embeddings.
          k: how many items to return; capped at N.

        Returns:
          (indices [Q, K] int32, scores [Q, K] float32) with K = min(k, N); every index
          is a real item (never padding).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, self.num_items)
        indices_qk, scores_qk = self._search(queries, k, self.leaves_to_search)
        # The searched leaves may hold fewer than k items; ScaNN then pads with NaN
        # scores. Those queries are searched again over every leaf.
        short_q = np.isnan(scores_qk).any(axis=1)
        if short_q.any():
            indices_qk[short_q], scores_qk[short_q] = self._search(
                queries[short_q], k, self.num_leaves
            )
        return indices_qk, scores_qk

    def _search(
        self, queries_qd: np.ndarray, k: int, leaves_to_search: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        reorder = self.config.reorder
        indices_qk, scores_qk = self.searcher.search_batched_parallel(
            queries_qd,
            final_num_neighbors=k,
            pre_reorder_num_neighbors=max(reorder, k) if reorder and self.num_leaves else None,
            leaves_to_search=leaves_to_search,
        )
        return np.asarray(indices_qk, dtype=np.int32), np.asarray(scores_qk, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        """The parameters the index was built with, for logs and reports."""
        tree = self.num_leaves is not None
        return {
            "algorithm": "tree_ah" if tree else "brute_force",
            "num_items": self.num_items,
            "num_leaves": self.num_leaves,
            "leaves_to_search": self.leaves_to_search,
            "dimensions_per_block": self.config.dimensions_per_block if tree else None,
            "anisotropic_quantization_threshold": (
                self.config.anisotropic_quantization_threshold if tree else None
            ),
            "reorder": self.config.reorder if tree else None,
        }


def build_scann_index(items: np.ndarray, config: ScannConfig = ScannConfig()) -> ScannIndex:
    """Builds a dot-product ScaNN index over `items` ([N, D], float32).

    Below `config.brute_force_below` items the search is exact; otherwise a k-means tree
    (about sqrt(N) leaves, ~10% of them searched) with anisotropic hashing and exact
    re-scoring of the best candidates, the configuration ScaNN's documentation recommends.
    """
    items = np.ascontiguousarray(items, dtype=np.float32)
    num_items = items.shape[0]
    if items.ndim != 2 or num_items == 0:
        raise ValueError(f"items must be a non-empty [N, D] array, got shape {items.shape}.")
    # num_neighbors is only a default: every search passes its own k.
    builder = scann.scann_ops_pybind.builder(items, 10, "dot_product")
    if num_items < config.brute_force_below:
        return ScannIndex(
            searcher=builder.score_brute_force().build(),
            num_items=num_items,
            num_leaves=None,
            leaves_to_search=None,
            config=config,
        )
    sample_size = min(config.training_sample_size, num_items)
    # ScaNN refuses more leaves than training points.
    num_leaves = min(config.num_leaves or round(math.sqrt(num_items)), sample_size)
    # Small catalogues have small leaves: 10% of them would scan too few items to be accurate.
    adaptive = max(
        math.ceil(num_leaves / 10), math.ceil(config.min_points_searched * num_leaves / num_items)
    )
    leaves_to_search = min(config.leaves_to_search or adaptive, num_leaves)
    builder = builder.tree(
        num_leaves=num_leaves,
        num_leaves_to_search=leaves_to_search,
        training_sample_size=sample_size,
    ).score_ah(
        config.dimensions_per_block,
        anisotropic_quantization_threshold=config.anisotropic_quantization_threshold,
    )
    if config.reorder:
        builder = builder.reorder(config.reorder)
    return ScannIndex(
        searcher=builder.build(),
        num_items=num_items,
        num_leaves=num_leaves,
        leaves_to_search=leaves_to_search,
        config=config,
    )


def recall_vs_exact(approx_indices: np.ndarray, exact_indices: np.ndarray) -> float:
    """Mean over queries of |approx ∩ exact| / k, for two [Q, k] index arrays."""
    approx_indices, exact_indices = np.asarray(approx_indices), np.asarray(exact_indices)
    if approx_indices.shape != exact_indices.shape:
        raise ValueError(f"Shapes differ: {approx_indices.shape} vs {exact_indices.shape}.")
    num_queries, k = exact_indices.shape
    # Offset each row's indices into its own range so one flat isin compares row by row.
    stride = int(max(approx_indices.max(), exact_indices.max())) + 1
    row_offset = np.arange(num_queries, dtype=np.int64)[:, None] * stride
    found = np.isin(approx_indices + row_offset, exact_indices + row_offset)
    return float(found.sum() / (num_queries * k))


def measure_qps(
    search: Callable[[np.ndarray], object], queries: np.ndarray, *, repeats: int = 3
) -> float:
    """Queries per second of `search(queries)`: best of `repeats` timed runs after a warm-up.

    JAX results are waited for, so asynchronous dispatch is not mistaken for speed.
    """
    jax.block_until_ready(search(queries))
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(search(queries))
        best = min(best, time.perf_counter() - start)
    return len(queries) / best


_INDEX_FILE = "recjax_index.json"


def save_scann_index(index: ScannIndex, directory: str | Path) -> None:
    """Writes the index into `directory` with ScaNN's own serialization (no pickle).

    ScaNN records absolute asset paths; they are rewritten relative to `directory` so
    the files can move (ScaNN resolves relative asset paths against the directory).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    index.searcher.serialize(str(directory))
    assets = directory / "scann_assets.pbtxt"
    if assets.is_file():
        assets.write_text(
            re.sub(r'asset_path: "[^"]*/([^"/]+)"', r'asset_path: "\1"', assets.read_text())
        )
    chosen = {
        "num_items": index.num_items,
        "num_leaves": index.num_leaves,
        "leaves_to_search": index.leaves_to_search,
        "config": dataclasses.asdict(index.config),
    }
    (directory / _INDEX_FILE).write_text(json.dumps(chosen, indent=2))


def load_scann_index(directory: str | Path) -> ScannIndex:
    """Reads an index written by `save_scann_index`."""
    directory = Path(directory)
    chosen = json.loads((directory / _INDEX_FILE).read_text())
    return ScannIndex(
        searcher=scann.scann_ops_pybind.load_searcher(str(directory)),
        num_items=chosen["num_items"],
        num_leaves=chosen["num_leaves"],
        leaves_to_search=chosen["leaves_to_search"],
        config=ScannConfig(**chosen["config"]),
    )
