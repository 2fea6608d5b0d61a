"""Two-tower retrieval on Amazon Beauty (S3-Rec 5-core sequences; read from ../shared/data).

    recjax train --config experiments/amazon_beauty.py [--data PATH/TO/Beauty.txt]
    recjax train --config experiments/amazon_beauty.py:smoke

The file holds each user's items in order without timestamps (positions stand in for
time). Protocol: leave-last-out; full ranking with the user's earlier items removed,
as in the S3-Rec / SASRec papers.
Results: experiments/results/amazon_beauty.json and the README table.
"""

from pathlib import Path

from recjax.config import EvalConfig, ExperimentConfig, TrainConfig, smoke_variant
from recjax.data.examples import ExampleConfig
from recjax.data.pipeline import BatchConfig
from recjax.data.sources import DataConfig

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def get_config(variant: str = "default") -> ExperimentConfig:
    config = ExperimentConfig(
        name="amazon_beauty",
        data=DataConfig(format="seqrec", path=str(SHARED_DATA / "s3rec-seqrec" / "Beauty.txt")),
        examples=ExampleConfig(
            positive_events=("INTERACTION",),
            context_feature=None,
            text_feature=None,
            history_length=50,
        ),
        train=TrainConfig(num_epochs=10.0, batch=BatchConfig(batch_size=1024)),
        eval=EvalConfig(exclude_seen=True),
    )
    if variant == "default":
        return config
    if variant == "smoke":
        return smoke_variant(config)
    raise ValueError(f"Unknown variant {variant!r} of amazon_beauty (default, smoke).")
