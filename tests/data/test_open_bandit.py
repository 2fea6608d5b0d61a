import shutil

import numpy as np
import pytest

from recjax.data.report import DataFormatError
from recjax.data.sources import DataConfig, load_events
from recjax.data.sources.open_bandit import read_open_bandit


def test_reads_every_campaign_of_the_real_sample(shared_data):
    events, report = load_events(
        DataConfig(format="open_bandit", path=str(shared_data("open-bandit-dataset-small")))
    )
    assert len(events) == report.rows_read == 60_000
    # SOURCE.md: 42 + 69 + 46 (bts) + 38 + 46 + 46 (random) clicks.
    assert events.value.sum() == 287
    assert set(np.unique(events.features["position"])) == {1, 2, 3}
    assert set(np.unique(events.features["campaign"])) == {"all", "men", "women"}
    assert events.num_items() == 80 + 34 + 46
    np.testing.assert_allclose(
        events.features["propensity"][events.features["policy"] == "random"][:3], 1 / 80
    )
    assert all(user.count("|") == 3 for user in events.user[:10])


def _small_copy(shared_data, tmp_path, rows: int = 4):
    """random/men with only its first `rows` log rows, in tmp_path."""
    source = shared_data("open-bandit-dataset-small") / "random" / "men"
    folder = tmp_path / "random" / "men"
    folder.mkdir(parents=True)
    shutil.copy(source / "item_context.csv", folder)
    lines = (source / "men.csv").read_text().splitlines()[: rows + 1]
    return folder / "men.csv", lines


def _write(file, lines):
    file.write_text("\n".join(lines) + "\n")


def test_small_copy_reads_exactly(shared_data, tmp_path):
    file, lines = _small_copy(shared_data, tmp_path)
    _write(file, lines)
    events, _ = read_open_bandit(tmp_path)
    assert events.item[0] == "men/" + lines[1].split(",")[2]
    assert events.timestamp[0] == 1574553793  # 2019-11-24 00:03:13.44 UTC.
    assert events.features["campaign"][0] == "men"
    assert events.features["policy"][0] == "random"


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        (4, "2", "0 or 1"),
        (3, "7", "1, 2 or 3"),
        (2, "99", "an item of item_context.csv"),
        (5, "0", "a probability in (0, 1]"),
        (1, "yesterday", "integer seconds or an ISO 8601"),
    ],
)
def test_bad_values_name_file_line_and_field(shared_data, tmp_path, column, value, expected):
    file, lines = _small_copy(shared_data, tmp_path)
    fields = lines[3].split(",")
    fields[column] = value
    lines[3] = ",".join(fields)
    _write(file, lines)
    with pytest.raises(DataFormatError) as raised:
        read_open_bandit(file)
    error = raised.value
    assert (error.path, error.line, error.found) == (str(file), 4, value)
    assert error.field == lines[0].split(",")[column]
    assert expected in error.expected

    events, report = read_open_bandit(file, on_error="skip")
    assert len(events) == 3
    assert sum(report.skipped.values()) == 1
    assert report.rows_read == 4


def test_short_line_header_and_missing_catalogue(shared_data, tmp_path):
    file, lines = _small_copy(shared_data, tmp_path)
    _write(file, [*lines[:2], "1,2019-11-24 00:00:00+00:00,3", *lines[2:]])
    with pytest.raises(DataFormatError, match=r"men.csv:3: field 'line'"):
        read_open_bandit(file)
    _write(file, [lines[0].replace("click", "clicked"), *lines[1:]])
    with pytest.raises(DataFormatError, match=r"men.csv:1: field 'header'"):
        read_open_bandit(file)
    _write(file, lines)
    (file.parent / "item_context.csv").unlink()
    with pytest.raises(FileNotFoundError, match="item_context"):
        read_open_bandit(file)
