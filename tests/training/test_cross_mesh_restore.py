"""A checkpoint restores onto another mesh: same values, laid out as the new mesh says."""

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest

from recjax.config import load_experiment
from recjax.data.examples import RetrievalData
from recjax.data.sources import load_events
from recjax.sharding.mesh import MODEL_AXIS, MeshConfig, make_mesh, param_shardings
from recjax.training.trainer import restore_trained, train

REPO = Path(__file__).resolve().parents[2]
STEPS = 2


@pytest.fixture(scope="module")
def smoke():
    config = load_experiment(str(REPO / "experiments" / "online_retail.py:smoke"))
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, max_steps=STEPS))
    return config, RetrievalData.build(load_events(config.data).events, config.examples)


def _on(config, data, mesh: MeshConfig, workdir: Path, *, trained_on: MeshConfig | None = None):
    """(trained, restored): trained on `trained_on` (default `mesh`), restored onto `mesh`."""
    trained = train(
        dataclasses.replace(config, mesh=trained_on or mesh), data, workdir, progress=False
    )
    return trained, restore_trained(dataclasses.replace(config, mesh=mesh), data, workdir)


def _assert_same_values(restored, trained):
    assert int(restored.state.step) == int(trained.state.step) == STEPS
    for tree in ("params", "opt_state", "rng"):
        jax.tree.map(
            np.testing.assert_array_equal,
            getattr(restored.state, tree),
            getattr(trained.state, tree),
        )


def test_restore_of_an_8_device_run_onto_one_device(smoke, tmp_path):
    config, data = smoke
    trained, restored = _on(
        config, data, MeshConfig(data=1, model=1), tmp_path, trained_on=MeshConfig(data=8, model=1)
    )
    assert trained.state.params["item_embedding"]["embedding"].sharding.num_devices == 8
    _assert_same_values(restored, trained)
    for leaf in jax.tree.leaves(restored.state.params):
        assert leaf.sharding.num_devices == 1


def test_restore_of_a_one_device_run_onto_2x4_shards_tables_over_model(smoke, tmp_path):
    config, data = smoke
    mesh_config = MeshConfig(data=2, model=4)
    trained, restored = _on(
        config, data, mesh_config, tmp_path, trained_on=MeshConfig(data=1, model=1)
    )
    _assert_same_values(restored, trained)
    params = restored.state.params
    expected = param_shardings(make_mesh(mesh_config), params)
    jax.tree.map(_assert_laid_out_as, params, expected)
    # Every table is padded to a multiple of 128 rows, so all of them split over 4 devices.
    for name in ("token_embedding", "item_embedding", "user_embedding", "context_embedding"):
        table = params[name]["embedding"]
        rows = table.shape[0]
        assert rows % 128 == 0
        assert {shard.data.shape for shard in table.addressable_shards} == {(rows // 4, 64)}
        assert table.sharding.spec[0] == MODEL_AXIS


def _assert_laid_out_as(leaf: jax.Array, sharding: jax.sharding.NamedSharding) -> None:
    assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim), (leaf.sharding, sharding)
