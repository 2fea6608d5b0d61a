"""Multi-task ranking on four logs: MMoE vs a shared bottom vs one model per task.

    python experiments/ranking_tables.py [--readme]    # all datasets x models x 3 seeds

`get_config("<dataset>")` is the full run, `get_config("<dataset>-smoke")` a run of
seconds on CPU; datasets: movielens_100k, online_retail, open_bandit, ebnerd.
Results (test split, mean ± std over seeds 0, 1, 2): experiments/results/ranking.json
and the README table.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from recjax.data.ranking_datasets import RankingDataConfig
from recjax.models.ranking import RankingModelConfig
from recjax.training.ranking_trainer import RankingExperimentConfig, RankingTrainConfig

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = ("movielens_100k", "online_retail", "open_bandit", "ebnerd")
ARCHITECTURES = ("mmoe", "shared_bottom", "single_task")

_DATA = {
    "movielens_100k": RankingDataConfig(
        dataset="movielens_100k", path=str(SHARED_DATA / "movielens-100k")
    ),
    # The most recent 100k purchases (and their negatives) keep the run short.
    "online_retail": RankingDataConfig(dataset="online_retail", max_positives=100_000),
    "open_bandit": RankingDataConfig(
        dataset="open_bandit", path=str(SHARED_DATA / "open-bandit-dataset-small")
    ),
    # 1,046 impressions: a larger test share, so ~200 clicks carry a dwell label.
    "ebnerd": RankingDataConfig(
        dataset="ebnerd",
        path=str(SHARED_DATA / "ebnerd-test-sample"),
        valid_quantile=0.7,
        test_quantile=0.8,
    ),
}
_TRAIN = {
    "movielens_100k": RankingTrainConfig(num_epochs=2.0, batch_size=512),
    "online_retail": RankingTrainConfig(num_epochs=2.0, batch_size=512),
    "open_bandit": RankingTrainConfig(num_epochs=3.0, batch_size=512),
    "ebnerd": RankingTrainConfig(num_epochs=8.0, batch_size=256),
}


def model_config(architecture: str, num_tasks: int) -> RankingModelConfig:
    """Sizes that give the three architectures about the same parameter budget (the
    counts are in the results table): MMoE's four 64-unit experts vs one 160-unit bottom
    (its wider tower inputs cost the rest); one model per task splits the embedding
    width and the bottom across its `num_tasks` models."""
    if architecture == "mmoe":
        return RankingModelConfig(architecture="mmoe", num_experts=4, expert_dims=(64,))
    if architecture == "shared_bottom":
        return RankingModelConfig(architecture="shared_bottom", bottom_dims=(160,))
    if architecture == "single_task":
        return RankingModelConfig(
            architecture="single_task",
            embedding_dim=max(16 // num_tasks, 4),
            bottom_dims=(max(160 // num_tasks, 32),),
            tower_dims=(32,),
        )
    raise ValueError(f"Unknown architecture {architecture!r}; expected one of {ARCHITECTURES}.")


def get_config(variant: str = "movielens_100k") -> RankingExperimentConfig:
    """`<dataset>` or `<dataset>-smoke` (a few dozen steps on a slice of the data), MMoE."""
    dataset, _, size = variant.partition("-")
    if dataset not in DATASETS or size not in ("", "smoke"):
        raise ValueError(f"Unknown variant {variant!r}; expected <dataset>[-smoke], {DATASETS}.")
    config = RankingExperimentConfig(
        name=f"ranking_{dataset}",
        data=_DATA[dataset],
        model=model_config("mmoe", 0),
        train=_TRAIN[dataset],
    )
    if size == "smoke":
        limit = 3_000 if dataset != "ebnerd" else None
        config = dataclasses.replace(
            config,
            name=config.name + "_smoke",
            data=dataclasses.replace(config.data, max_positives=limit),
            train=dataclasses.replace(
                config.train, num_epochs=4.0, batch_size=128, warmup_steps=5, log_every_steps=5
            ),
        )
    return config
