import dataclasses
import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

from recjax.data.ranking_datasets import load_ranking_data
from recjax.data.ranking_examples import RankingExamples
from recjax.data.splits import Role
from recjax.losses.multitask import TaskSpec
from recjax.training import ranking_trainer
from recjax.training.ranking_trainer import (
    evaluate_ranking,
    predict,
    train_ranking,
    training_batch,
    weighted_tasks,
)

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "ranking.py"


def _experiment():
    spec = importlib.util.spec_from_file_location("ranking_experiment", EXPERIMENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def ebnerd_smoke(shared_data):
    shared_data("ebnerd-test-sample")
    experiments = _experiment()
    config = experiments.get_config("ebnerd-smoke")
    data = load_ranking_data(config.data, say=lambda _: None)
    return experiments, config, data


def test_smoke_experiment_losses_fall_and_compile_once(ebnerd_smoke, tmp_path):
    _, config, data = ebnerd_smoke
    config = dataclasses.replace(
        config, train=dataclasses.replace(config.train, num_epochs=6.0, batch_size=256)
    )
    ranking_trainer._program.cache_clear()
    trained = train_ranking(config, data, tmp_path, progress=False)
    losses = [entry["train/loss"] for entry in trained.losses]
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    assert {"train/click", "train/long_dwell", "train/log_dwell"} <= set(trained.losses[-1])
    metrics = evaluate_ranking(
        trained.model, trained.state.params, data.examples.of_role(Role.TEST)
    )
    assert metrics["log_dwell/rmse"] < 2 * metrics["log_dwell/rmse_constant"]
    assert 0.0 <= metrics["click/auc"] <= 1.0
    # Another seed reuses the compiled program; the step compiled exactly once.
    train_ranking(dataclasses.replace(config, seed=1), data, progress=False)
    assert ranking_trainer._program.cache_info().hits == 1
    assert ranking_trainer._program.cache_info().misses == 1
    # Resuming a finished run in the same workdir does not train again.
    resumed = train_ranking(config, data, tmp_path, progress=False)
    assert resumed.losses == []
    np.testing.assert_array_equal(
        predict(resumed.model, resumed.state.params, data.examples.inputs)["click"],
        predict(trained.model, trained.state.params, data.examples.inputs)["click"],
    )


def test_experiment_budgets_are_comparable(ebnerd_smoke):
    experiments, config, data = ebnerd_smoke
    counts = {}
    sample = training_batch(data.examples, 0, 8, 0)
    for architecture in experiments.ARCHITECTURES:
        model_config = experiments.model_config(architecture, len(data.tasks))
        model = ranking_trainer.build_model(dataclasses.replace(config, model=model_config), data)
        params = jax.eval_shape(model.init, jax.random.PRNGKey(0), sample)["params"]
        counts[architecture] = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    # Within 2x of each other (splitting the tables across tasks keeps the single-task
    # models on the small side; the README table lists the exact counts).
    assert max(counts.values()) < 2 * min(counts.values()), counts
    assert counts["shared_bottom"] < counts["mmoe"] * 1.2


def test_task_weights_and_batches():
    tasks = (TaskSpec(name="a", kind="binary"), TaskSpec(name="b", kind="regression"))
    assert [t.weight for t in weighted_tasks(tasks, {"b": 0.25})] == [1.0, 0.25]
    with pytest.raises(ValueError, match="unknown tasks"):
        weighted_tasks(tasks, {"c": 1.0})
    examples = RankingExamples(
        inputs={"item": np.arange(10)},
        labels={"a": np.arange(10, dtype=np.float32)},
        masks={"a": np.ones(10, bool)},
        roles=np.zeros(10, np.int8),
    )
    first = training_batch(examples, 0, 4, seed=0)
    again = training_batch(examples, 0, 4, seed=0)
    np.testing.assert_array_equal(first["item"], again["item"])
    np.testing.assert_array_equal(first["label/a"], first["item"])
    epoch = np.concatenate([training_batch(examples, s, 4, 0)["item"] for s in (0, 1)])
    assert len(set(epoch.tolist())) == 8  # No repeats within an epoch.
