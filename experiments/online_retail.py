"""Two-tower retrieval on UCI Online Retail (the embedded dataset): the main job.

    recjax train --config experiments/online_retail.py            # = `recjax train`
    recjax train --config experiments/online_retail.py:smoke      # seconds, used by tests

Protocol: leave-last-out over purchases; full ranking over the catalogue with seen items
kept as candidates (repeat purchases are most of this shop's sales, so removing what a
customer bought before would remove most right answers).
Results: see experiments/results/ and the README table (`python experiments/make_tables.py`).
"""

import dataclasses

from recjax.config import EvalConfig, ExperimentConfig, OptimizerConfig, TrainConfig
from recjax.data.pipeline import BatchConfig


def get_config(variant: str = "default") -> ExperimentConfig:
    config = ExperimentConfig(name="online_retail")
    if variant == "default":
        return config
    if variant == "smoke":
        return dataclasses.replace(
            config,
            name="online_retail_smoke",
            train=TrainConfig(
                num_epochs=1.0,
                max_steps=30,
                log_every_steps=10,
                batch=BatchConfig(batch_size=256, num_uniform_negatives=64),
                optimizer=OptimizerConfig(warmup_steps=5),
            ),
            eval=EvalConfig(max_users=300, show_examples=1),
        )
    raise ValueError(f"Unknown variant {variant!r} of online_retail (default, smoke).")
