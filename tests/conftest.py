"""Test setup: 8 fake CPU devices for sharding tests, and access to ../shared/data."""

import os

# Must be set before jax initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def _shared_data_path(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        message = f"{path} is missing (tests that read ../shared/data need it next to the repo)."
        if os.environ.get("RECJAX_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def shared_data():
    """Returns a function mapping a path under ../shared/data to a Path, or skips/fails."""
    return _shared_data_path


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """(data, trained model, bundle path) of the Online Retail smoke experiment."""
    from recjax.config import load_experiment
    from recjax.export.exporter import export_run
    from recjax.main_job import load_data, train_and_evaluate
    from recjax.training.trainer import restore_trained

    workdir = tmp_path_factory.mktemp("smoke_run")
    config = load_experiment(str(REPO_ROOT / "experiments" / "online_retail.py:smoke"))
    train_and_evaluate(config, workdir, progress=False, say=lambda _: None)
    data = load_data(config, say=lambda _: None)
    trained = restore_trained(config, data, workdir)
    return data, trained, export_run(workdir, workdir / "bundle", say=lambda _: None)
