"""Two-tower retrieval on MovieLens-100K (read from ../shared/data or --data; not shipped).

    recjax train --config experiments/movielens_100k.py [--data PATH/TO/ml-100k]
    recjax train --config experiments/movielens_100k.py:smoke

Every rating is an implicit positive. Protocol: leave-last-out by timestamp; full
ranking over all movies with the user's earlier movies removed (nobody rates a movie
twice, so keeping them would only reward re-recommending what was already seen).
Results: experiments/results/movielens_100k.json and the README table.
"""

from pathlib import Path

from recjax.config import EvalConfig, ExperimentConfig, TrainConfig, smoke_variant
from recjax.data.examples import ExampleConfig
from recjax.data.pipeline import BatchConfig
from recjax.data.sources import DataConfig

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def get_config(variant: str = "default") -> ExperimentConfig:
    config = ExperimentConfig(
        name="movielens_100k",
        data=DataConfig(format="movielens_100k", path=str(SHARED_DATA / "movielens-100k")),
        examples=ExampleConfig(
            positive_events=("RATING",), context_feature=None, text_feature=None, history_length=50
        ),
        train=TrainConfig(num_epochs=20.0, batch=BatchConfig(batch_size=512)),
        eval=EvalConfig(exclude_seen=True),
    )
    if variant == "default":
        return config
    if variant == "smoke":
        return smoke_variant(config)
    raise ValueError(f"Unknown variant {variant!r} of movielens_100k (default, smoke).")
